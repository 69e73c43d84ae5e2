module example.com/prefork-go-server

go 1.19
