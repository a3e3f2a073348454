package vault

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// DefaultTLSFilesPoll is how often WatchTLSFiles re-reads --vault-ca-file
// and the client certificate's files. They are polled, not watched: the
// kubelet replaces a mounted Secret by swapping a symlink to a new
// directory, which inotify sees on the directory, not on the file
// (controller-runtime's certwatcher polls too).
const DefaultTLSFilesPoll = 10 * time.Second

// An operator who rotates Vault's CA, or whose client certificate is
// renewed, sees whether the new files were taken.
var (
	caFileValid = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fsm_webhooks_vault_ca_file_valid",
		Help: "1 while --vault-ca-file as last read holds the CAs Vault's certificate is verified with, 0 while it cannot be used (unreadable, no PEM certificate) and the CAs read before are kept; absent without --vault-ca-file.",
	}, nil)
	caFileReloads = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fsm_webhooks_vault_ca_file_reloads_total",
		Help: "Changes of --vault-ca-file taken while running: Vault's certificate verified with the new CAs from then on.",
	})
	clientCertValid = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fsm_webhooks_vault_client_cert_valid",
		Help: "1 while --vault-client-cert-file and --vault-client-key-file as last read are the certificate presented to Vault and its key, 0 while they cannot be used (unreadable, no PEM, a key that is not the certificate's, as when read between the updates of the two files) and the pair read before is kept; absent without them.",
	}, nil)
	clientCertReloads = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fsm_webhooks_vault_client_cert_reloads_total",
		Help: "Changes of --vault-client-cert-file and --vault-client-key-file taken while running: the new certificate presented to Vault from then on.",
	})
)

func init() {
	metrics.Registry.MustRegister(caFileValid, caFileReloads, clientCertValid, clientCertReloads)
}

// WatchTLSFiles re-reads CAFile (--vault-ca-file) and the client
// certificate with its key (--vault-client-cert-file,
// --vault-client-key-file) every TLSFilesPoll until ctx is done, so that a
// Vault CA rotated, or a client certificate renewed, in a mounted Secret is
// used without a restart: new valid content replaces the client
// (swapClient) for the calls made from then on. Content that cannot be
// used (unreadable, no PEM certificate, a key that is not the
// certificate's) keeps the content in use; the problem is logged once,
// until it changes, and the input's gauge (fsm_webhooks_vault_ca_file_valid,
// fsm_webhooks_vault_client_cert_valid) is 0 until it is valid again. It
// returns at once without either. Run it once per Issuer.
func (i *Issuer) WatchTLSFiles(ctx context.Context) {
	w := i.tlsWatcher()
	if len(w.inputs) == 0 {
		return
	}
	every := i.opts.TLSFilesPoll
	if every <= 0 {
		every = DefaultTLSFilesPoll
	}
	for _, in := range w.inputs {
		in.valid.WithLabelValues().Set(1) // New read it
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.poll()
		}
	}
}

// swapClient makes the calls from now on use a client built with f as New
// builds it, carrying the token in use. Calls under way end on the client
// they started with.
func (i *Issuer) swapClient(f tlsFiles) error {
	c, err := newClient(i.opts, f, logr.Discard())
	if err != nil {
		return fmt.Errorf("building a Vault client with them: %w", err)
	}
	// Under tokenMu, as every token change: a token set on the old client
	// after the new one copied its token would otherwise be lost.
	i.tokenMu.Lock()
	old := i.cur.Load()
	c.SetToken(old.Token())
	i.cur.Store(c)
	i.tokenMu.Unlock()
	// Its pooled connections were set up with the old files. A connection
	// in use now is left to finish its call; an HTTP/2 one then idles out
	// with the transport (90 s): swaps come with renewals, weeks apart.
	old.CloneConfig().HttpClient.CloseIdleConnections()
	return nil
}

// tlsWatcher is WatchTLSFiles's state between polls.
type tlsWatcher struct {
	inputs []*tlsInput
	// inUse is what the client in use was built with.
	inUse tlsFiles
	swap  func(tlsFiles) error
}

func (i *Issuer) tlsWatcher() *tlsWatcher {
	w := &tlsWatcher{inUse: i.files, swap: i.swapClient}
	if path := i.opts.CAFile; path != "" {
		w.inputs = append(w.inputs, caInput(path, i.files.ca, i.opts.Logger, func(ca []byte) error {
			f := w.inUse
			f.ca = ca
			return w.use(f)
		}))
	}
	if certFile, keyFile := i.opts.ClientCertFile, i.opts.ClientKeyFile; certFile != "" {
		w.inputs = append(w.inputs, clientCertInput(certFile, keyFile, i.files.cert, i.files.key, i.opts.Logger, func(cert, key []byte) error {
			f := w.inUse
			f.cert, f.key = cert, key
			return w.use(f)
		}))
	}
	return w
}

// use swaps in a client built with f.
func (w *tlsWatcher) use(f tlsFiles) error {
	if err := w.swap(f); err != nil {
		return err
	}
	w.inUse = f
	return nil
}

// poll reads every input once.
func (w *tlsWatcher) poll() {
	for _, in := range w.inputs {
		in.poll()
	}
}

// tlsInput is one input of Vault's TLS that WatchTLSFiles re-reads: the CA
// file, or the client certificate with its key. Its content is one []byte
// per file.
type tlsInput struct {
	// what names it in logs, kv its flags and files.
	what string
	kv   []any
	read func() ([][]byte, error)
	// use swaps in a client built with new valid content.
	use func([][]byte) error
	// The logs' wording: what a change does, what a problem keeps, what
	// was in use while it was not valid.
	changed, kept, throughout string
	valid                     *prometheus.GaugeVec
	reloads                   prometheus.Counter
	log                       logr.Logger

	// inUse is the content the client in use was built with.
	inUse [][]byte
	// problem is the problem last logged; empty while the content is valid.
	problem string
}

func caInput(path string, inUse []byte, log logr.Logger, use func(ca []byte) error) *tlsInput {
	return &tlsInput{
		what: "--vault-ca-file", kv: []any{"flag", "--vault-ca-file", "file", path},
		read: func() ([][]byte, error) {
			ca, err := ReadCAFile(path)
			return [][]byte{ca}, err
		},
		use:        func(d [][]byte) error { return use(d[0]) },
		changed:    "Vault's certificate is verified with its new CAs",
		kept:       "Vault's certificate is still verified with the CAs read before",
		throughout: "its CAs were in use throughout",
		valid:      caFileValid, reloads: caFileReloads, log: log,
		inUse: [][]byte{inUse},
	}
}

func clientCertInput(certFile, keyFile string, cert, key []byte, log logr.Logger, use func(cert, key []byte) error) *tlsInput {
	return &tlsInput{
		what: "the Vault client certificate (--vault-client-cert-file, --vault-client-key-file)",
		kv:   []any{"flag", "--vault-client-cert-file", "file", certFile, "keyFile", keyFile},
		read: func() ([][]byte, error) {
			cert, key, err := ReadClientKeyPair(certFile, keyFile)
			return [][]byte{cert, key}, err
		},
		use:        func(d [][]byte) error { return use(d[0], d[1]) },
		changed:    "the new certificate is presented to Vault",
		kept:       "the certificate read before is still presented to Vault",
		throughout: "the certificate read before was presented throughout",
		valid:      clientCertValid, reloads: clientCertReloads, log: log,
		inUse: [][]byte{cert, key},
	}
}

// tlsOutcome is what one poll of an input did.
type tlsOutcome int

const (
	tlsUnchanged     tlsOutcome = iota // the content in use, nothing to report
	tlsReloaded                        // new valid content: in use
	tlsRecovered                       // valid again, with the content in use
	tlsRejected                        // unusable: content kept, problem logged
	tlsStillRejected                   // unusable for the problem logged last
)

// decide is what a poll does with what it read (content, or readErr),
// given the content in use and the problem last logged. tlsReloaded means
// "swap the content in", which can still fail (rejection).
func decide(inUse [][]byte, problem string, read [][]byte, readErr error) tlsOutcome {
	switch {
	case readErr != nil:
		return rejection(problem, readErr)
	case !slices.EqualFunc(read, inUse, bytes.Equal):
		return tlsReloaded
	case problem != "":
		return tlsRecovered
	}
	return tlsUnchanged
}

// rejection is the outcome of err, said once until the problem changes.
func rejection(problem string, err error) tlsOutcome {
	if err.Error() == problem {
		return tlsStillRejected
	}
	return tlsRejected
}

// poll reads the input once and acts on what it holds.
func (in *tlsInput) poll() tlsOutcome {
	data, err := in.read()
	o := decide(in.inUse, in.problem, data, err)
	if o == tlsReloaded {
		if err = in.use(data); err != nil {
			o = rejection(in.problem, err)
		}
	}
	switch o {
	case tlsReloaded:
		in.inUse, in.problem = data, ""
		in.valid.WithLabelValues().Set(1)
		in.reloads.Inc()
		in.log.Info(in.what+" changed: "+in.changed, in.kv...)
	case tlsRecovered:
		in.problem = ""
		in.valid.WithLabelValues().Set(1)
		in.log.Info(in.what+" is valid again; "+in.throughout, in.kv...)
	case tlsRejected:
		in.problem = err.Error()
		in.valid.WithLabelValues().Set(0)
		in.log.Error(err, in.what+" cannot be used: "+in.kept+" (logged once until the problem changes)", in.kv...)
	case tlsStillRejected:
		in.valid.WithLabelValues().Set(0)
	}
	return o
}
