// Package version is the build's identity: version, commit and build date,
// set by the linker (-ldflags -X) for release builds and otherwise taken from
// what the Go toolchain recorded (module version, VCS revision and time), so
// a `go install` or `go build` from a checkout still says what it is.
package version

import (
	"runtime"
	"runtime/debug"
	"sync"
)

// Set by the linker, e.g.
//
//	-ldflags "-X github.com/flomesh-io/fsm-webhooks/internal/version.version=v0.2.0
//	          -X github.com/flomesh-io/fsm-webhooks/internal/version.commit=$(git rev-parse HEAD)
//	          -X github.com/flomesh-io/fsm-webhooks/internal/version.date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
var (
	version string
	commit  string
	date    string
)

// Unknown is what a field says when neither the linker nor the toolchain
// recorded it.
const Unknown = "unknown"

// Info identifies a build.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	Date      string `json:"date"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// String is one line for `--version` and logs.
func (i Info) String() string {
	return i.Version + " (commit " + i.Commit + ", built " + i.Date + ", " + i.GoVersion + " " + i.Platform + ")"
}

var get = sync.OnceValue(func() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(version, commit, date, bi)
})

// Get returns this binary's Info.
func Get() Info { return get() }

// resolve prefers the linker's values, then the toolchain's build info, then
// Unknown. It is pure so each source's precedence is table-tested.
func resolve(ldVersion, ldCommit, ldDate string, bi *debug.BuildInfo) Info {
	info := Info{Version: ldVersion, Commit: ldCommit, Date: ldDate, GoVersion: runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		if bi.GoVersion != "" {
			info.GoVersion = bi.GoVersion
		}
		// "(devel)" is what a build from a checkout records: no version.
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if info.Commit == "" {
					info.Commit = s.Value
				}
			case "vcs.time":
				if info.Date == "" {
					info.Date = s.Value
				}
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		// A build of uncommitted changes is not the commit it names.
		if modified && ldCommit == "" && info.Commit != "" {
			info.Commit += "-dirty"
		}
	}
	for _, f := range []*string{&info.Version, &info.Commit, &info.Date} {
		if *f == "" {
			*f = Unknown
		}
	}
	return info
}
