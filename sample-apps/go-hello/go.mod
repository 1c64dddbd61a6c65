module example.com/go-hello

go 1.24

require example.com/greet v1.0.0
