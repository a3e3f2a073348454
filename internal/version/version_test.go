package version

import (
	"runtime/debug"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestResolve(t *testing.T) {
	vcs := func(rev, tm, modified string) *debug.BuildInfo {
		return &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: rev}, {Key: "vcs.time", Value: tm}, {Key: "vcs.modified", Value: modified}}}
	}
	for _, tc := range []struct {
		name                      string
		ldVersion, ldCommit, ldDt string
		bi                        *debug.BuildInfo
		want                      Info
	}{
		{"linker wins", "v0.2.0", "abc", "2026-12-01T00:00:00Z", vcs("def", "2026-11-30T00:00:00Z", "true"),
			Info{Version: "v0.2.0", Commit: "abc", Date: "2026-12-01T00:00:00Z", GoVersion: "go1.26.8"}},
		{"checkout build: VCS stamp, no version", "", "", "", vcs("def", "2026-11-30T00:00:00Z", "false"),
			Info{Version: Unknown, Commit: "def", Date: "2026-11-30T00:00:00Z", GoVersion: "go1.26.8"}},
		{"uncommitted changes", "", "", "", vcs("def", "2026-11-30T00:00:00Z", "true"),
			Info{Version: Unknown, Commit: "def-dirty", Date: "2026-11-30T00:00:00Z", GoVersion: "go1.26.8"}},
		{"go install module@version", "", "", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.3.1"}},
			Info{Version: "v0.3.1", Commit: Unknown, Date: Unknown, GoVersion: "go1.26.8"}},
		{"nothing recorded", "", "", "", nil, Info{Version: Unknown, Commit: Unknown, Date: Unknown}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := resolve(tc.ldVersion, tc.ldCommit, tc.ldDt, tc.bi)
			if tc.want.GoVersion == "" {
				tc.want.GoVersion = got.GoVersion // runtime's
			}
			tc.want.Platform = got.Platform
			if got != tc.want {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestBuildInfoMetric: one series, value 1, labelled with this build.
func TestBuildInfoMetric(t *testing.T) {
	i := Get()
	if got := testutil.ToFloat64(buildInfo.WithLabelValues(i.Version, i.Commit, i.GoVersion)); got != 1 {
		t.Fatalf("fsm_webhooks_build_info = %g, want 1", got)
	}
	if n := testutil.CollectAndCount(buildInfo, "fsm_webhooks_build_info"); n != 1 {
		t.Fatalf("%d build_info series, want 1", n)
	}
}
