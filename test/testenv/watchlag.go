package testenv

import (
	"errors"
	"io"
	"net/http"
	"sync"

	"k8s.io/client-go/rest"
)

// StalledWatches is a copy of cfg whose clients list as usual but whose
// watches, once open, deliver nothing until they end: a replica whose
// informers lag behind every write made after they listed, however long
// the test looks. A watch-list request (an informer's initial list streamed
// over a watch) is refused, so informers fall back to a plain list and sync.
func StalledWatches(cfg *rest.Config) *rest.Config {
	out := rest.CopyConfig(cfg)
	out.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return stallWatches{rt}
	})
	return out
}

type stallWatches struct{ next http.RoundTripper }

func (s stallWatches) RoundTrip(r *http.Request) (*http.Response, error) {
	q := r.URL.Query()
	if q.Get("watch") != "true" {
		return s.next.RoundTrip(r)
	}
	if q.Get("sendInitialEvents") == "true" {
		return nil, errors.New("testenv: watch-list refused by StalledWatches")
	}
	return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: newSilentBody(r), Request: r}, nil
}

// silentBody blocks every read until the request's context ends or the
// client closes it, then reports the end of the stream.
type silentBody struct {
	r      *http.Request
	once   sync.Once
	closed chan struct{}
}

func newSilentBody(r *http.Request) *silentBody {
	return &silentBody{r: r, closed: make(chan struct{})}
}

func (b *silentBody) Read([]byte) (int, error) {
	select {
	case <-b.r.Context().Done():
	case <-b.closed:
	}
	return 0, io.EOF
}

func (b *silentBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}
