module github.com/batonhq/baton/bench

go 1.26.0

require (
	github.com/batonhq/baton v0.0.0
	github.com/cloudflare/tableflip v1.2.3
	golang.org/x/sys v0.49.0
)

replace github.com/batonhq/baton => ../
