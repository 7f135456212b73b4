package s3

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// Store is the object-storage tier. Its methods are safe for concurrent use.
type Store struct {
	cfg    Config
	client *minio.Client
	core   minio.Core
	queue  chan tier.Entry

	// stop ends the workers' wait for the next upload (Close); abort ends
	// the uploads still running once Close's grace has passed.
	stop, abort       context.CancelFunc
	stopCtx, abortCtx context.Context
	workers           sync.WaitGroup
	closed            atomic.Bool
	stored, present   atomic.Int64
	failed, dropped   atomic.Int64

	// pending counts the uploads queued or running; idle is closed when
	// it is 0 (nil then), for Flush.
	pmu     sync.Mutex // guards pending and idle
	pending int
	idle    chan struct{}

	mu      sync.Mutex // guards refuted, held and lastErr
	refuted map[oci.Digest]struct{}
	// held are digests the bucket is known to hold (stored, found
	// present, or read from it): a Keep of one sends nothing. Bounded
	// as refuted is.
	held     map[oci.Digest]struct{}
	lastErr  string
	lastWhen time.Time
}

// maxRefuted bounds the digests remembered as refuted; past it the
// set starts again (a refuted object not yet overwritten is then read
// once more, and refuted again by its verification).
const maxRefuted = 4096

// Open checks cfg and starts the upload workers. It does not reach the
// store: one that cannot be reached at start is skipped by each read and
// upload until it can.
func Open(cfg Config) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	endpoint, secure := "s3.amazonaws.com", true
	if cfg.Endpoint != "" {
		u, _ := url.Parse(cfg.Endpoint) // checked by withDefaults
		endpoint, secure = u.Host, u.Scheme == "https"
	}
	creds := credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	if cfg.AccessKey == "" {
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{},
			&credentials.FileAWSCredentials{},
			// Web identity token files (IRSA), container credentials (Pod
			// Identity) and the instance profile, in that order.
			&credentials.IAM{Client: &http.Client{Timeout: cfg.Timeout}},
		})
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	transport := cfg.Transport
	if transport == nil {
		transport = newTransport(cfg.Timeout)
	}
	client, err := minio.New(endpoint, &minio.Options{
		Creds: creds, Secure: secure, Region: cfg.Region, BucketLookup: lookup, Transport: transport,
		// No retries: a failing store is skipped (the next source is
		// asked) and an upload is dropped, rather than waited for.
		MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	s := &Store{cfg: cfg, client: client, core: minio.Core{Client: client},
		queue: make(chan tier.Entry, cfg.Queue), refuted: make(map[oci.Digest]struct{}), held: make(map[oci.Digest]struct{})}
	s.stopCtx, s.stop = context.WithCancel(context.Background())
	s.abortCtx, s.abort = context.WithCancel(context.Background())
	for range cfg.Uploads {
		s.workers.Add(1)
		// Stops when Close cancels stopCtx, after the upload it is running.
		go s.work()
	}
	return s, nil
}

// newTransport is the tier's own: connections and answers' headers bounded
// by timeout, so that a store that does not answer is skipped in time.
func newTransport(timeout time.Duration) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = timeout
	t.ResponseHeaderTimeout = timeout
	t.ExpectContinueTimeout = time.Second
	t.MaxIdleConnsPerHost = 64
	return t
}

// Keep queues an upload of e from the committed file (Config.Read). It never
// blocks: with the queue full, or the store closed, the upload is dropped
// and counted. Content with a private source is never uploaded.
func (s *Store) Keep(e tier.Entry) {
	if e.Marked() {
		return // public content only: the cache never passes it, and neither does this
	}
	if s.holds(e.Digest) {
		// Read from the bucket, or stored there already: every fill
		// commits, and a HEAD per commit would say what is known.
		return
	}
	if s.closed.Load() || s.cfg.Read == nil {
		s.drop()
		return
	}
	s.begin() // before the worker can take it, and end it
	select {
	case s.queue <- e:
	default:
		s.end()
		s.drop()
	}
}

// begin counts one more upload queued or running.
func (s *Store) begin() {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if s.pending == 0 {
		s.idle = make(chan struct{})
	}
	s.pending++
}

// end counts one upload done (stored, present, failed or dropped).
func (s *Store) end() {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	s.pending--
	if s.pending == 0 {
		close(s.idle)
		s.idle = nil
	}
}

// Flush waits until every upload queued before it has ended (stored,
// found present, failed or dropped), or ctx ends: a graceful stop lets the
// last fills reach the bucket before Close, and a test knows what the
// bucket holds.
func (s *Store) Flush(ctx context.Context) error {
	s.pmu.Lock()
	idle := s.idle
	s.pmu.Unlock()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("s3: flush: %d uploads left: %w", s.Status().Queued, ctx.Err())
	}
}

func (s *Store) drop() {
	s.dropped.Add(1)
	s.cfg.Metrics.S3.Uploads.WithLabelValues(UploadDropped).Inc()
}

// Refute says the bytes read for dg failed verification: dg is not read
// from the bucket again, and its next upload overwrites the object there,
// without the HEAD and the conditional create that would keep it.
func (s *Store) Refute(dg oci.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.refuted) >= maxRefuted {
		clear(s.refuted)
	}
	s.refuted[dg] = struct{}{}
	delete(s.held, dg)
}

// holds reports whether the bucket is known to hold dg's object.
func (s *Store) holds(dg oci.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.held[dg]
	return ok
}

// hold remembers that the bucket holds dg's object, unless it is refuted.
func (s *Store) hold(dg oci.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.refuted[dg]; ok {
		return
	}
	if len(s.held) >= maxRefuted {
		clear(s.held)
	}
	s.held[dg] = struct{}{}
}

// isRefuted reports whether dg's object is known to be wrong.
func (s *Store) isRefuted(dg oci.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.refuted[dg]
	return ok
}

// overwritten forgets that dg was refuted, once the good copy is stored.
func (s *Store) overwritten(dg oci.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.refuted, dg)
}

// failure records err as the store's last error, for Status.
func (s *Store) failure(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr, s.lastWhen = err.Error(), time.Now()
}

// Status is what the tier says of itself on the status page.
type Status struct {
	Bucket, Endpoint, Prefix string
	// Queued is how many uploads wait now.
	Queued int
	// Stored, Present, Failed and Dropped count uploads by result since
	// Open.
	Stored, Present, Failed, Dropped int64
	// LastError is the last failure of a read or an upload, and when it
	// was; "" and the zero time for none.
	LastError     string
	LastErrorTime time.Time
}

// Status returns the tier's status now.
func (s *Store) Status() Status {
	s.mu.Lock()
	last, when := s.lastErr, s.lastWhen
	s.mu.Unlock()
	return Status{Bucket: s.cfg.Bucket, Endpoint: s.cfg.Endpoint, Prefix: s.cfg.Prefix, Queued: len(s.queue),
		Stored: s.stored.Load(), Present: s.present.Load(), Failed: s.failed.Load(), Dropped: s.dropped.Load(),
		LastError: last, LastErrorTime: when}
}

// Close stops taking uploads (those queued are dropped, and counted), lets
// the uploads running finish for up to Timeout, then ends them, and waits
// for the workers. Reads still work after Close.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.stop()
	done := make(chan struct{})
	// Stops when the workers have (each returns after its upload, which
	// abort ends at the latest).
	go func() {
		s.workers.Wait()
		close(done)
	}()
	grace := time.NewTimer(s.cfg.Timeout)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		s.abort()
		<-done
	}
	s.abort()
	for {
		select {
		case <-s.queue:
			s.end()
			s.drop()
		default:
			return nil
		}
	}
}
