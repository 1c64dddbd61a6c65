module example.com/go-cgi-state

go 1.27
