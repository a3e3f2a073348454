//go:build e2enode

package node_test

import (
	"slices"
	"testing"
)

func TestPipyDrainHeld(t *testing.T) {
	const (
		header    = "State  Recv-Q Send-Q Local Address:Port  Peer Address:Port Process\n"
		listening = "LISTEN 0      4096         0.0.0.0:15003      0.0.0.0:*     users:((\"pipy\",pid=812,fd=9))\n" +
			"LISTEN 0      4096         0.0.0.0:15001      0.0.0.0:*     users:((\"pipy\",pid=812,fd=8))\n"
		fromNode  = "ESTAB  0      0          10.88.0.5:15003   10.88.0.1:43122 users:((\"pipy\",pid=812,fd=21)) timer:(keepalive,14sec,0)\n\t cubic wscale:7,7 rto:204\n"
		fromPod   = "ESTAB  0      0          10.88.0.5:15003   10.88.0.9:51200 users:((\"pipy\",pid=812,fd=22))\n"
		fromApp   = "ESTAB  0      0          127.0.0.1:15001   127.0.0.1:40100 users:((\"pipy\",pid=812,fd=23))\n"
		fromSelf  = "ESTAB  0      0          10.88.0.5:15010   10.88.0.5:40200 users:((\"pipy\",pid=812,fd=24))\n"
		upstream  = "ESTAB  0      0          10.88.0.5:40300   10.96.0.20:6060 users:((\"pipy\",pid=812,fd=25))\n"
		appSocket = "ESTAB  0      0          10.88.0.5:8080    10.88.0.1:43000 users:((\"meshtool\",pid=700,fd=5))\n"
		v6mapped  = "ESTAB  0      0   [::ffff:10.88.0.5]:15902 [::ffff:10.88.0.1]:41000 users:((\"pipy\",pid=812,fd=26))\n"
	)
	for _, tc := range []struct {
		name        string
		snaps       []string
		wantHeld    []string
		wantOutside bool
	}{
		{name: "no snapshot", snaps: nil},
		{name: "draining, held by the node", snaps: []string{header + fromNode, header + fromNode},
			wantHeld: []string{"10.88.0.5:15003 <- 10.88.0.1:43122"}, wantOutside: true},
		{name: "draining, held by another pod; upstreams and other processes do not count", snaps: []string{header + fromPod + upstream, header + fromPod + upstream + appSocket},
			wantHeld: []string{"10.88.0.5:15003 <- 10.88.0.9:51200"}, wantOutside: true},
		{name: "v4-mapped v6 peer from the node", snaps: []string{header + v6mapped},
			wantHeld: []string{"[::ffff:10.88.0.5]:15902 <- [::ffff:10.88.0.1]:41000"}, wantOutside: true},
		{name: "still listening at the first snapshot: the signal did not stop it", snaps: []string{header + listening + fromNode, header + fromNode}},
		{name: "held by the app through loopback", snaps: []string{header + fromNode, header + fromNode + fromApp}},
		{name: "held from the pod's own address", snaps: []string{header + fromSelf}},
		{name: "nothing held: Pipy stuck by itself", snaps: []string{header + upstream, header + upstream}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			held, outside := pipyDrainHeld(tc.snaps, "10.88.0.5")
			if outside != tc.wantOutside || !slices.Equal(held, tc.wantHeld) {
				t.Errorf("pipyDrainHeld = %v, %v; want %v, %v", held, outside, tc.wantHeld, tc.wantOutside)
			}
		})
	}
}
