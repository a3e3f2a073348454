package servingcert

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/flomesh-io/fsm-webhooks/certs"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Loaded is one parsed cert as served.
type Loaded struct {
	Cert  *tls.Certificate
	Chain []*x509.Certificate // leaf first
	// CA is the Secret's ca.crt: the root(s) the cert chains to.
	CA []byte
	// ResourceVersion of the Secret it came from.
	ResourceVersion string
	// Fingerprint names the served content (tls.crt, tls.key, ca.crt): a
	// metadata-only edit of the Secret (a label) changes ResourceVersion,
	// not it, so what was proven of the cert still holds.
	Fingerprint string
}

// Source serves a webhook's cert from memory, fed by an informer that
// watches only its Secret (field selector on the name). A renewal written by
// any replica reaches every replica's listener within the watch latency,
// without a restart and without a handshake served from a half-written
// state: the pair is swapped atomically and only once it parses.
type Source struct {
	namespace string
	name      string
	log       logr.Logger

	cur      atomic.Pointer[Loaded]
	mu       sync.Mutex
	onChange []func(*Loaded)
	informer cache.SharedIndexInformer
}

// NewSource watches Secret namespace/name.
func NewSource(client kubernetes.Interface, namespace, name string, log logr.Logger) *Source {
	s := &Source{namespace: namespace, name: name, log: log}
	lw := cache.NewListWatchFromClient(client.CoreV1().RESTClient(), "secrets", namespace,
		fields.OneTermEqualSelector("metadata.name", name))
	s.informer = cache.NewSharedIndexInformer(lw, &corev1.Secret{}, 0, cache.Indexers{})
	_, _ = s.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.load(obj) },
		UpdateFunc: func(_, obj any) { s.load(obj) },
		// On delete the last good cert keeps serving until the Store
		// writes a new one: dropping it would fail every handshake.
		DeleteFunc: func(any) { s.notify(s.cur.Load()) },
	})
	return s
}

// OnChange registers f, called after each Secret event (with the current
// cert, which may be unchanged if the new content did not parse).
func (s *Source) OnChange(f func(*Loaded)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onChange = append(s.onChange, f)
}

// Run runs the informer until ctx ends.
func (s *Source) Run(ctx context.Context) { s.informer.Run(ctx.Done()) }

// HasSynced reports whether the first list arrived.
func (s *Source) HasSynced() bool { return s.informer.HasSynced() }

// Secret returns the cached Secret, or nil.
func (s *Source) Secret() *corev1.Secret {
	obj, ok, err := s.informer.GetStore().GetByKey(s.namespace + "/" + s.name)
	if err != nil || !ok {
		return nil
	}
	sec, _ := obj.(*corev1.Secret)
	return sec
}

// Current returns the cert being served, or nil.
func (s *Source) Current() *Loaded { return s.cur.Load() }

// GetCertificate is a tls.Config.GetCertificate.
func (s *Source) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	l := s.cur.Load()
	if l == nil {
		return nil, fmt.Errorf("serving cert Secret %s/%s: %w", s.namespace, s.name, ErrNoCert)
	}
	return l.Cert, nil
}

func (s *Source) load(obj any) {
	sec, ok := obj.(*corev1.Secret)
	if !ok {
		return
	}
	if cur := s.cur.Load(); cur != nil && cur.ResourceVersion == sec.ResourceVersion {
		s.notify(cur)
		return
	}
	l, err := Parse(sec)
	if err != nil {
		s.log.Error(err, "keeping the previous serving cert", "secret", s.namespace+"/"+s.name)
		s.notify(s.cur.Load())
		return
	}
	s.loaded(s.cur.Swap(l), l)
	s.notify(l)
}

// Offer serves sec, a version of the Secret read or written by this process
// (the Store's outcome), when it is newer than what is served. A renewal
// this replica wrote is then served at once, not when the watch delivers it:
// a watch that lags under load must not leave a cert served past the
// renewal that replaced it. The informer's events still load every later
// version, from any writer. A Secret that does not parse is not served.
func (s *Source) Offer(sec *corev1.Secret) {
	if sec == nil {
		return
	}
	cur := s.cur.Load()
	if !newer(sec.ResourceVersion, cur) {
		return
	}
	l, err := Parse(sec)
	if err != nil {
		s.log.Error(err, "not serving the Secret just written", "secret", s.namespace+"/"+s.name)
		return
	}
	if !s.cur.CompareAndSwap(cur, l) {
		return // an event loaded a version meanwhile: it is at least as new
	}
	s.loaded(cur, l)
	s.notify(l)
}

// newer reports whether resource version rv of the Secret is later than
// cur's. Versions of one object compare as integers (what
// resourceversion.CompareResourceVersion implements); a version that does
// not parse as one is taken as newer, as the informer's order would have it.
func newer(rv string, cur *Loaded) bool {
	if cur == nil {
		return true
	}
	if rv == cur.ResourceVersion {
		return false
	}
	c, err := resourceversion.CompareResourceVersion(rv, cur.ResourceVersion)
	return err != nil || c > 0
}

// Sync brings Current up to the Secret in the informer's store and returns
// it. The store is written before the event handlers run, so Secret can
// hold a version Current does not reflect yet: at start, a Secret other
// replicas may be serving while this one serves nothing. A store older than
// what Offer loaded is left behind. A Secret that does not parse leaves
// Current as it is (the handler logs it).
func (s *Source) Sync() *Loaded {
	cur := s.cur.Load()
	sec := s.Secret()
	if sec == nil || !newer(sec.ResourceVersion, cur) {
		return cur
	}
	l, err := Parse(sec)
	if err != nil {
		return cur
	}
	// The handler's ordered loads win a race: it will load this version too.
	if !s.cur.CompareAndSwap(cur, l) {
		return s.cur.Load()
	}
	s.loaded(cur, l)
	return l
}

func (s *Source) loaded(prev, l *Loaded) {
	if prev != nil && prev.Fingerprint == l.Fingerprint {
		return
	}
	s.log.Info("serving cert loaded", "secret", s.namespace+"/"+s.name, "resourceVersion", l.ResourceVersion,
		"notAfter", l.Chain[0].NotAfter, "issuer", l.Chain[0].Issuer.CommonName)
}

func (s *Source) notify(l *Loaded) {
	s.mu.Lock()
	fs := append([]func(*Loaded){}, s.onChange...)
	s.mu.Unlock()
	for _, f := range fs {
		f(l)
	}
}

// Parse turns a serving-cert Secret into a Loaded cert.
func Parse(sec *corev1.Secret) (*Loaded, error) {
	pair, err := tls.X509KeyPair(sec.Data[KeyCert], sec.Data[KeyKey])
	if err != nil {
		return nil, fmt.Errorf("serving cert Secret %s/%s: %s/%s: %w", sec.Namespace, sec.Name, KeyCert, KeyKey, err)
	}
	chain := make([]*x509.Certificate, 0, len(pair.Certificate))
	for _, der := range pair.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("serving cert Secret %s/%s: %s: %w", sec.Namespace, sec.Name, KeyCert, err)
		}
		chain = append(chain, c)
	}
	pair.Leaf = chain[0]
	if _, err := certs.ParseCertsPEM(sec.Data[KeyCA]); err != nil {
		return nil, fmt.Errorf("serving cert Secret %s/%s: %s: %w", sec.Namespace, sec.Name, KeyCA, err)
	}
	return &Loaded{Cert: &pair, Chain: chain, CA: sec.Data[KeyCA], ResourceVersion: sec.ResourceVersion,
		Fingerprint: fingerprint(sec.Data[KeyCert], sec.Data[KeyKey], sec.Data[KeyCA])}, nil
}

// fingerprint hashes the parts, each length-prefixed so that no two lists
// of parts hash alike.
func fingerprint(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))
}
