package status

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs/tresor"
)

// TestTresorRotation: the report names each phase, dates it from the
// moment that phase was entered (the rotation's grace period runs from
// it), says whether the root is ours to rotate and which root signs.
func TestTresorRotation(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	started, activated, completed := now.Add(-3*time.Hour), now.Add(-2*time.Hour), now.Add(-time.Hour)
	root := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "fsm-ca.flomesh.io"},
		NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(10 * 24 * time.Hour)}
	for _, tc := range []struct {
		phase     tresor.Phase
		managed   bool
		wantPhase string
		wantSince time.Time
	}{
		{tresor.PhaseNone, true, "None", time.Time{}},
		{tresor.PhaseNextRootAdded, true, "NextRootAdded", started},
		{tresor.PhaseNextRootActive, true, "NextRootActive", activated},
		{tresor.PhaseComplete, true, "Complete", completed},
		{tresor.PhaseNone, false, "None", time.Time{}},
	} {
		t.Run(tc.wantPhase, func(t *testing.T) {
			rs := tresor.RotationStatus{Phase: tc.phase, Managed: tc.managed, Active: root,
				Started: started.In(time.Local), Activated: activated.In(time.Local), Completed: completed.In(time.Local)}
			if tc.phase == tresor.PhaseNone {
				rs.Started, rs.Activated, rs.Completed = time.Time{}, time.Time{}, time.Time{}
			}
			got := TresorRotation(rs, now)
			if got.Phase != tc.wantPhase || !got.Since.Equal(tc.wantSince) || got.Managed != tc.managed {
				t.Errorf("phase %q since %s managed %v, want %q since %s managed %v", got.Phase, got.Since, got.Managed, tc.wantPhase, tc.wantSince, tc.managed)
			}
			if !got.Since.IsZero() && got.Since.Location() != time.UTC {
				t.Errorf("since %s is not in UTC", got.Since)
			}
			if got.Root == nil || got.Root.Subject != "CN=fsm-ca.flomesh.io" || got.Root.DaysLeft != 10 {
				t.Errorf("signing root %+v, want CN=fsm-ca.flomesh.io with 10 days left", got.Root)
			}
		})
	}
}

// TestWriteTableRows: what the table says for each root-rotation state and
// each webhook verdict, and what it leaves out.
func TestWriteTableRows(t *testing.T) {
	since := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	root := &CertInfo{Subject: "CN=fsm-ca.flomesh.io", NotAfter: time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC), DaysLeft: 3318}
	for _, tc := range []struct {
		name       string
		report     Report
		want, omit []string
	}{{
		name:   "rotation in progress on our root",
		report: Report{Healthy: true, RootRotation: &RootRotation{Phase: "NextRootActive", Since: since, Managed: true, Root: root}},
		want: []string{"ROOT ROTATION  NextRootActive since 2026-12-01T10:00:00Z",
			"signing root   CN=fsm-ca.flomesh.io, expires 2036-01-01T00:00:00Z (3318 days)"},
		omit: []string{"managed"},
	}, {
		name:   "never rotated, not our root",
		report: Report{Healthy: true, RootRotation: &RootRotation{Phase: "None", Managed: false, Root: root}},
		want: []string{"ROOT ROTATION  None\n",
			"managed        no: a root fsm-webhooks did not create (FSM's, or one brought by the operator) is never rotated by it"},
		omit: []string{"since"},
	}, {
		name: "conversion owned by another mesh",
		report: Report{Healthy: true, Webhooks: []WebhookStatus{{Name: "converter", Secret: "fsm-system/c", Registration: "CustomResourceDefinition/meshconfigs.config.flomesh.io",
			CABundleProblem: "x509: certificate signed by unknown authority", ConversionOwner: "other-system/other"}}},
		want: []string{"FAILS: x509: certificate signed by unknown authority (conversion owned by mesh other-system/other)", "healthy: yes"},
		omit: []string{"ROOT ROTATION"},
	}, {
		name: "conversion owned by this mesh",
		report: Report{Healthy: true, Webhooks: []WebhookStatus{{Name: "converter", Secret: "fsm-system/c", Registration: "CustomResourceDefinition/meshconfigs.config.flomesh.io",
			CABundleVerifies: true, ConversionOwner: "fsm-system/fsm"}}},
		want: []string{"verifies (conversion owned by mesh fsm-system/fsm)"},
		omit: []string{"FAILS"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := tc.report.WriteTable(&out); err != nil {
				t.Fatal(err)
			}
			for _, want := range tc.want {
				if !strings.Contains(out.String(), want) {
					t.Errorf("table lacks %q:\n%s", want, out.String())
				}
			}
			for _, omit := range tc.omit {
				if strings.Contains(out.String(), omit) {
					t.Errorf("table has %q:\n%s", omit, out.String())
				}
			}
		})
	}
}
