package bench

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Bucket is where the replicas of the restart scenario keep the image set:
// a bucket of an S3-compatible store at Endpoint, or one of a versitygw
// the run starts for itself.
type Bucket struct {
	// Endpoint is the store's URL (http://127.0.0.1:9000), addressed
	// path-style. Empty means none, or Versitygw's.
	Endpoint string
	// Name is the bucket, which must exist at Endpoint; a versitygw's is
	// made by the run. Empty means "cacheyd-bench" with Versitygw.
	Name string
	// Region is the bucket's region. Empty means: asked of the store at
	// Endpoint; us-east-1 for a versitygw.
	Region string
	// AccessKey and SecretKey are the keys of Endpoint. Empty means the
	// standard chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY...). A
	// versitygw gets random keys of the run's own.
	AccessKey, SecretKey string
	// Versitygw is a versitygw binary (v1.8.0) that the run starts on a
	// free loopback port over a temporary directory, and stops by its
	// process ID when it ends. Empty means Endpoint.
	Versitygw string
}

// Store is the bucket one in-process cacheyd names (CacheydConfig.Store).
type Store struct {
	// Endpoint is the store's URL, addressed path-style; Bucket the
	// bucket's name; Region its region, empty to ask the store.
	Endpoint, Bucket, Region string
	// Prefix goes before every key: every burst size of a run has its own,
	// so that its first burst finds the bucket empty.
	Prefix string
	// AccessKey and SecretKey are the store's keys; empty means the
	// standard chain.
	AccessKey, SecretKey string
}

// defaultBucket is the bucket made in a versitygw started for a run.
const defaultBucket = "cacheyd-bench"

// check refuses a Bucket that names no store the way S3 clients do.
func (b Bucket) check() error {
	if (b.AccessKey == "") != (b.SecretKey == "") {
		return errors.New("bench: an S3 access key needs its secret key, and the other way round")
	}
	if b.Endpoint == "" {
		return nil
	}
	u, err := url.Parse(b.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("bench: S3 endpoint %q: want a base URL such as http://127.0.0.1:9000", b.Endpoint)
	}
	if b.Name == "" {
		return errors.New("bench: an S3 endpoint needs its bucket's name")
	}
	return nil
}

// describe is how the report names the bucket.
func (b Bucket) describe() string {
	if b.Versitygw != "" {
		return "a versitygw (" + b.Versitygw + ") started on loopback over a temporary directory"
	}
	return "bucket " + b.Name + " at " + b.Endpoint
}

// versitygw is a versitygw process serving one bucket over a temporary
// directory.
type versitygw struct {
	store  Store
	dir    string
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has exited
	log    bytes.Buffer  // its output; written by exec's copier until exited
}

// versitygwReady bounds how long startVersitygw waits for it to answer: a
// bound for a failure to be reported, not a measure of speed.
const versitygwReady = time.Minute

// startVersitygw starts bin's posix backend on a free loopback port (never
// its default, :7070) over a new temporary directory holding one bucket,
// name, with keys of its own.
func startVersitygw(bin, name string) (*versitygw, error) {
	if name == "" {
		name = defaultBucket
	}
	dir, err := os.MkdirTemp("", "cacheyd-bench-s3-")
	if err != nil {
		return nil, fmt.Errorf("bench: versitygw: %w", err)
	}
	// The posix backend serves every directory of its root as a bucket of
	// its root user: the bucket is made here, with no S3 client.
	if err := os.Mkdir(filepath.Join(dir, name), 0o750); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("bench: versitygw: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("bench: versitygw: %w", err)
	}
	g := &versitygw{dir: dir, exited: make(chan struct{}), store: Store{
		Endpoint: "http://" + addr, Bucket: name, Region: "us-east-1",
		AccessKey: randomHex(10), SecretKey: randomHex(20),
	}}
	g.cmd = exec.Command(bin, "--access", g.store.AccessKey, "--secret", g.store.SecretKey,
		"--region", g.store.Region, "--port", addr, "--quiet", "posix", dir)
	g.cmd.Stdout, g.cmd.Stderr = &g.log, &g.log
	if err := g.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("bench: start versitygw: %w", err)
	}
	// Stops when the process exits, which close makes it do.
	go func() {
		_ = g.cmd.Wait()
		close(g.exited)
	}()
	if err := g.waitReady(); err != nil {
		return nil, errors.Join(err, g.close())
	}
	return g, nil
}

// waitReady waits until the server answers HTTP (an unsigned request is
// refused, which is an answer), exits, or versitygwReady passes.
func (g *versitygw) waitReady() error {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	deadline := time.Now().Add(versitygwReady)
	for {
		resp, err := client.Get(g.store.Endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-g.exited:
			return fmt.Errorf("bench: versitygw exited before it answered: %s", g.log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: versitygw not answering on %s within %v: %w", g.store.Endpoint, versitygwReady, err)
		}
	}
}

// close stops the process by its PID (SIGTERM, then SIGKILL if it
// lingers) and removes its directory.
func (g *versitygw) close() error {
	var err error
	select {
	case <-g.exited:
		err = fmt.Errorf("bench: versitygw exited during the run: %s", g.log.String())
	default:
		if serr := g.cmd.Process.Signal(syscall.SIGTERM); serr != nil && !errors.Is(serr, os.ErrProcessDone) {
			err = fmt.Errorf("bench: stop versitygw (pid %d): %w", g.cmd.Process.Pid, serr)
		}
		select {
		case <-g.exited:
		case <-time.After(10 * time.Second):
			_ = g.cmd.Process.Kill()
			<-g.exited
		}
	}
	return errors.Join(err, os.RemoveAll(g.dir))
}

// freeAddr is a loopback address whose port was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// randomHex is n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
