module wendelin.dev/wcfs

go 1.25

toolchain go1.25.5

require (
	github.com/coreos/go-systemd/v22 v22.5.0 // indirect
	github.com/go-python/gopy v0.4.10 // indirect
	github.com/golang/glog v1.2.5 // indirect
	github.com/gonuts/commander v0.1.0 // indirect
	github.com/gonuts/flag v0.1.0 // indirect
	github.com/hanwen/go-fuse/v2 v2.12.1 // indirect
	github.com/moby/sys/mountinfo v0.7.2 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	github.com/prometheus/procfs v0.16.1 // indirect
	golang.org/x/mod v0.29.0 // indirect
	golang.org/x/sync v0.17.0 // indirect
	golang.org/x/sys v0.38.0 // indirect
	golang.org/x/telemetry v0.0.0-20251008203120-078029d740a8 // indirect
	golang.org/x/tools v0.38.0 // indirect
	lab.nexedi.com/kirr/go123 v0.0.0-20250817102603-bdd89cab9f4a // indirect
	lab.nexedi.com/kirr/neo/go v0.0.0-20240924102820-6235fb602308 // indirect
)

tool (
	github.com/go-python/gopy
	golang.org/x/tools/cmd/goimports
)
