module wendelin.dev/wcfs

go 1.25

toolchain go1.25.5

require (
	github.com/coreos/go-systemd/v22 v22.5.0
	github.com/go-python/gopy v0.4.10
	github.com/golang/glog v1.2.5
	github.com/hanwen/go-fuse/v2 v2.12.1
	github.com/kisielk/og-rek v1.2.1-0.20240923165241-e691997e3596
	github.com/moby/sys/mountinfo v0.7.2
	github.com/prometheus/procfs v0.16.1
	golang.org/x/sync v0.17.0
	golang.org/x/sys v0.38.0
	lab.nexedi.com/kirr/go123 v0.0.0-20250817102603-bdd89cab9f4a
	lab.nexedi.com/kirr/neo/go v0.0.0-20240924102820-6235fb602308
)

require (
	crawshaw.io/sqlite v0.3.2 // indirect
	github.com/DataDog/czlib v0.0.0-20210322182103-8087f4e14ae7 // indirect
	github.com/aristanetworks/gomap v0.0.0-20230726210543-f4e41046dced // indirect
	github.com/cznic/strutil v0.0.0-20181122101858-275e90344537 // indirect
	github.com/fsnotify/fsnotify v1.7.0 // indirect
	github.com/gonuts/commander v0.1.0 // indirect
	github.com/gonuts/flag v0.1.0 // indirect
	github.com/philhofer/fwd v1.1.3-0.20240612014219-fbbf4953d986 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	github.com/shamaton/msgpack v1.2.1 // indirect
	github.com/someonegg/gocontainer v1.0.0 // indirect
	github.com/tinylib/msgp v1.2.0 // indirect
	go4.org/unsafe/assume-no-moving-gc v0.0.0-20231121144256-b99613f794b6 // indirect
	golang.org/x/exp v0.0.0-20230725093048-515e97ebf090 // indirect
	golang.org/x/mod v0.29.0 // indirect
	golang.org/x/telemetry v0.0.0-20251008203120-078029d740a8 // indirect
	golang.org/x/tools v0.38.0 // indirect
)

tool (
	github.com/go-python/gopy
	golang.org/x/tools/cmd/goimports
)
