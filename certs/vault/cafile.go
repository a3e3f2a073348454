package vault

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// DefaultCAFilePoll is how often WatchCAFile re-reads --vault-ca-file. The
// file is polled, not watched: the kubelet replaces a mounted Secret by
// swapping a symlink to a new directory, which inotify sees on the
// directory, not on the file (controller-runtime's certwatcher polls too).
const DefaultCAFilePoll = 10 * time.Second

// An operator who rotates Vault's CA sees whether the new file was taken.
var (
	caFileValid = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fsm_webhooks_vault_ca_file_valid",
		Help: "1 while --vault-ca-file as last read holds the CAs Vault's certificate is verified with, 0 while it cannot be used (unreadable, no PEM certificate) and the CAs read before are kept; absent without --vault-ca-file.",
	}, nil)
	caFileReloads = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fsm_webhooks_vault_ca_file_reloads_total",
		Help: "Changes of --vault-ca-file taken while running: Vault's certificate verified with the new CAs from then on.",
	})
)

func init() {
	metrics.Registry.MustRegister(caFileValid, caFileReloads)
}

// WatchCAFile re-reads CAFile (--vault-ca-file) every CAFilePoll until ctx
// is done, so that a Vault CA rotated in the mounted Secret is trusted
// without a restart: new content holding a certificate replaces the client
// (useCA) for the calls made from then on. A file that cannot be used
// (unreadable, empty, no PEM certificate) keeps the CAs in use; the problem
// is logged once, until it changes, and fsm_webhooks_vault_ca_file_valid is
// 0 until the file is valid again. It returns at once without CAFile. Run
// it once per Issuer.
func (i *Issuer) WatchCAFile(ctx context.Context) {
	if i.opts.CAFile == "" {
		return
	}
	every := i.opts.CAFilePoll
	if every <= 0 {
		every = DefaultCAFilePoll
	}
	f := &caFile{path: i.opts.CAFile, inUse: i.caPEM, log: i.opts.Logger, use: i.useCA}
	caFileValid.WithLabelValues().Set(1) // New read it
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.poll()
		}
	}
}

// useCA makes the calls from now on verify Vault's certificate with ca: a
// client built as New builds it, carrying the token in use. Calls under
// way end on the client they started with.
func (i *Issuer) useCA(ca []byte) error {
	c, err := newClient(i.opts, ca, logr.Discard())
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
	// Its pooled connections verified Vault with the old CAs: the idle
	// ones go now, those in use after the transport's idle timeout.
	old.CloneConfig().HttpClient.CloseIdleConnections()
	return nil
}

// caFile is WatchCAFile's state between polls.
type caFile struct {
	path string
	// inUse is the content whose CAs the client in use trusts.
	inUse []byte
	// problem is the problem last logged; empty while the file is valid.
	problem string
	log     logr.Logger
	// use swaps in a client trusting the CAs of a new content.
	use func(ca []byte) error
}

// caOutcome is what one poll did.
type caOutcome int

const (
	caUnchanged     caOutcome = iota // the content in use, nothing to report
	caReloaded                       // new valid content: its CAs are in use
	caRecovered                      // valid again, with the content in use
	caRejected                       // unusable: CAs kept, problem logged
	caStillRejected                  // unusable for the problem logged last
)

// poll reads the file once and acts on what it holds.
func (f *caFile) poll() caOutcome {
	data, err := ReadCAFile(f.path)
	switch {
	case err != nil:
		return f.reject(err)
	case bytes.Equal(data, f.inUse):
		if f.problem == "" {
			return caUnchanged
		}
		f.problem = ""
		caFileValid.WithLabelValues().Set(1)
		f.log.Info("--vault-ca-file is valid again; its CAs were in use throughout", "file", f.path)
		return caRecovered
	}
	if err := f.use(data); err != nil {
		return f.reject(err)
	}
	f.inUse, f.problem = data, ""
	caFileValid.WithLabelValues().Set(1)
	caFileReloads.Inc()
	f.log.Info("--vault-ca-file changed: Vault's certificate is verified with its new CAs", "file", f.path)
	return caReloaded
}

// reject keeps the CAs in use and logs err unless it was the last logged:
// the file is read every poll, its problem said once.
func (f *caFile) reject(err error) caOutcome {
	caFileValid.WithLabelValues().Set(0)
	if err.Error() == f.problem {
		return caStillRejected
	}
	f.problem = err.Error()
	f.log.Error(err, "--vault-ca-file cannot be used: Vault's certificate is still verified with the CAs read before (logged once until the problem changes)",
		"flag", "--vault-ca-file", "file", f.path)
	return caRejected
}
