// Package s3test starts a real S3 server for tests: versitygw on a loopback
// port, over a directory of the test's own, with a bucket made for it.
package s3test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Env names the versitygw binary (.ci/run installs it and sets it); when it
// is not set, versitygw is looked up on PATH.
const Env = "CACHEYD_VERSITYGW"

// Install is how to get the server the tests run against.
const Install = "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"

// Keys of the server's root user, and the bucket Start makes.
const (
	AccessKey = "cacheyd-test-access"
	SecretKey = "cacheyd-test-secret-key"
	Region    = "us-east-1"
	Bucket    = "cacheyd-test"
)

// readyLimit bounds how long Start waits for the server to answer: a bound
// for a failure to be reported, not a measure of speed.
const readyLimit = time.Minute

// Server is a running versitygw.
type Server struct {
	// Endpoint is its URL, http://127.0.0.1:<port>.
	Endpoint string
	// Dir is the directory it stores buckets in: Dir/<bucket>/<key>.
	Dir string
	// Client is a client of the root user, path-style.
	Client *minio.Client

	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	log    bytes.Buffer  // its output, written by exec's copier until it exits
}

// Bin finds versitygw: Env, else PATH. When it is missing, t is skipped
// with how to install it, or fails under CI=true: CI never passes without
// the real server.
func Bin(t testing.TB) string {
	t.Helper()
	path := os.Getenv(Env)
	if path == "" {
		path = "versitygw"
	}
	found, err := exec.LookPath(path)
	if err != nil {
		msg := fmt.Sprintf("s3test: versitygw not found (%v): set %s or install it: %s", err, Env, Install)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return found
}

// Start runs versitygw for t with Bucket made, and stops it when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Bin(t)
	port, err := freePort()
	if err != nil {
		t.Fatalf("s3test: %v", err)
	}
	s := &Server{Endpoint: "http://" + port, Dir: t.TempDir(), exited: make(chan struct{})}
	s.cmd = exec.Command(bin, "--access", AccessKey, "--secret", SecretKey, "--region", Region,
		"--port", port, "--quiet", "posix", s.Dir)
	s.cmd.Stdout, s.cmd.Stderr = &s.log, &s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("s3test: start %s: %v", bin, err)
	}
	// Stops when the process exits, which the cleanup below makes it do.
	go func() {
		s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("s3test: %v", err)
		}
	})
	s.Client, err = minio.New(port, &minio.Options{Creds: credentials.NewStaticV4(AccessKey, SecretKey, ""),
		Region: Region, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatalf("s3test: %v", err)
	}
	if err := s.waitReady(); err != nil {
		t.Fatalf("s3test: %v", err)
	}
	return s
}

// freePort is a loopback address with a port free a moment ago.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitReady makes Bucket, asking again until the server answers, exits,
// or readyLimit passes.
func (s *Server) waitReady() error {
	const interval = 20 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), readyLimit)
	defer cancel()
	var last error
	for {
		probe, stop := context.WithTimeout(ctx, 5*time.Second)
		last = s.Client.MakeBucket(probe, Bucket, minio.MakeBucketOptions{Region: Region})
		stop()
		if last == nil {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("versitygw exited before it was ready: %s", s.log.String())
		case <-ctx.Done():
			return fmt.Errorf("versitygw not ready on %s within %v: %w", s.Endpoint, readyLimit, last)
		case <-time.After(interval):
		}
	}
}

// stop ends the server by its PID: SIGTERM, then SIGKILL if it lingers.
func (s *Server) stop() error {
	select {
	case <-s.exited:
		return errors.New("versitygw exited while the test ran")
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop versitygw (pid %d): %w", s.cmd.Process.Pid, err)
	}
	select {
	case <-s.exited:
		return nil
	case <-time.After(10 * time.Second):
	}
	s.cmd.Process.Kill()
	<-s.exited
	return nil
}
