module github.com/sockjsd/sockjsd

go 1.26.8

require (
	github.com/gorilla/mux v1.8.1
	github.com/gorilla/websocket v1.5.3
)
