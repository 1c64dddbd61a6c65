module example.com/go-cgi

go 1.24
