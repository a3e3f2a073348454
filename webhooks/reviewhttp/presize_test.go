package reviewhttp

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
)

// stalledBody is a client that sent its headers and then nothing until the
// server's read deadline cut it off.
type stalledBody struct{}

func (stalledBody) Read([]byte) (int, error) { return 0, errors.New("i/o timeout") }
func (stalledBody) Close() error             { return nil }

// TestClaimedLengthCostsNothingUntilSent: a Content-Length is a claim any
// in-cluster client can make in a few hundred bytes of headers; the memory
// readBody takes for a body must follow what has arrived, not the claim.
// Before, a claim of 1 MiB got 1 MiB allocated at once and held until the
// 15 s read timeout: 500 such connections, a few hundred KB of headers,
// held the chart's whole 512 Mi memory limit, and the injector's OOM kill
// fails every pod create in monitored namespaces (failurePolicy Fail).
func TestClaimedLengthCostsNothingUntilSent(t *testing.T) {
	const claims, claimed = 20, presizeMax
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range claims {
		req := httptest.NewRequest(http.MethodPost, "/x", nil)
		req.Body, req.ContentLength = stalledBody{}, claimed
		if _, status, err := readBody(httptest.NewRecorder(), req); status != http.StatusBadRequest || err == nil || !strings.Contains(err.Error(), "i/o timeout") {
			t.Fatalf("readBody = %d, %v; want 400 naming the read", status, err)
		}
	}
	runtime.ReadMemStats(&after)
	// A small first buffer per request is fine; the claim is not.
	if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(claims*claimed/8); got > limit {
		t.Errorf("%d requests each claiming %d bytes and sending none allocated %d bytes, want at most %d", claims, claimed, got, limit)
	}
}

// TestBodyReadAtAnySize: bodies around the first buffer's size and the
// presize bound read whole, and exactly.
func TestBodyReadAtAnySize(t *testing.T) {
	for _, n := range []int{1, presizeFirst - 1, presizeFirst, presizeFirst + 1, 3*presizeFirst + 7, presizeMax, presizeMax + 1, MaxBodyBytes} {
		want := bytes.Repeat([]byte("x"), n)
		for _, known := range []bool{true, false} {
			req := httptest.NewRequest(http.MethodPost, "/x", nil)
			// One byte at a time at the start: arrival in pieces.
			req.Body = io.NopCloser(io.MultiReader(bytes.NewReader(want[:1]), bytes.NewReader(want[1:])))
			req.ContentLength = -1
			if known {
				req.ContentLength = int64(n)
			}
			got, status, err := readBody(httptest.NewRecorder(), req)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%d bytes (length known %v): got %d bytes, status %d, err %v", n, known, len(got), status, err)
			}
		}
	}
}
