module github.com/batonhq/baton/examples/websocket

go 1.26.0

require (
	github.com/batonhq/baton v0.0.0
	github.com/gobwas/httphead v0.1.0
	github.com/gobwas/ws v1.5.0
)

require golang.org/x/sys v0.49.0 // indirect

replace github.com/batonhq/baton => ../..
