module github.com/batonhq/baton/examples/http3

go 1.26.0

replace (
	github.com/batonhq/baton => ../..
	github.com/batonhq/baton/quicroute => ../../quicroute
)

require (
	github.com/batonhq/baton v0.0.0
	github.com/batonhq/baton/quicroute v0.0.0
	github.com/quic-go/quic-go v0.65.0
)

require (
	github.com/quic-go/qpack v0.6.0 // indirect
	golang.org/x/crypto v0.54.0 // indirect
	golang.org/x/net v0.56.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.40.0 // indirect
)
