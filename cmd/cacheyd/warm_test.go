package main

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cacheyd/cacheyd/internal/puller"
	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/internal/warm"
)

// warmArgs parses "cacheyd warm ARGS..." and returns the command.
func warmArgs(t *testing.T, args ...string) *warmCmd {
	t.Helper()
	c, cmd, err := parse(t, append([]string{"warm"}, args...), nil)
	if err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	if !strings.HasPrefix(cmd, "warm") {
		t.Fatalf("command %q, want warm", cmd)
	}
	return &c.Warm
}

// platformBlobs returns the manifest digest and the config and layer
// descriptors of idx's image for platform.
func platformBlobs(t *testing.T, idx v1.ImageIndex, platform string) (v1.Hash, []v1.Descriptor) {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Platform == nil || d.Platform.String() != platform {
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		return d.Digest, append([]v1.Descriptor{m.Config}, m.Layers...)
	}
	t.Fatalf("no %s in the index", platform)
	return v1.Hash{}, nil
}

// TestWarmThenNodePullsStayInCache is the point of warm: after it, nodes of
// every platform pull the image without one GET reaching upstream, and a
// second warm finds everything cached.
func TestWarmThenNodePullsStayInCache(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{Token: true, Redirect: true})
	idx := up.SeedIndex(t, "team/app", "v1", []string{"linux/amd64", "linux/arm64"}, 3, 64<<10)
	base := startCacheyd(t, up, t.TempDir())
	up.Reset()

	var out, bar bytes.Buffer
	w := warmArgs(t, "--target", base, up.Host()+"/team/app:v1")
	res, err := w.run(t.Context(), nil, &out, &bar)
	if err != nil {
		t.Fatalf("warm: %v\n%s", err, out.String())
	}

	// Upstream saw each object exactly once.
	idxDigest, _ := idx.Digest()
	idxSize, _ := idx.Size()
	wantBytes, wantBlobs := idxSize, 0
	if n := up.Count(http.MethodGet, registrytest.KindManifest, idxDigest.String()); n != 1 {
		t.Errorf("upstream GETs of the index = %d, want 1", n)
	}
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		md, blobs := platformBlobs(t, idx, p)
		if n := up.Count(http.MethodGet, registrytest.KindManifest, md.String()); n != 1 {
			t.Errorf("upstream GETs of the %s manifest = %d, want 1", p, n)
		}
		img, _ := idx.Image(md)
		n, _ := img.Size()
		wantBytes += n
		for _, d := range blobs {
			wantBlobs++
			wantBytes += d.Size
			if n := up.Count(http.MethodGet, registrytest.KindCDN, d.Digest.String()); n != 1 {
				t.Errorf("upstream GETs of %s blob %s = %d, want 1", p, d.Digest, n)
			}
		}
	}
	if n := up.Count(http.MethodGet, registrytest.KindCDN, ""); n != wantBlobs {
		t.Errorf("upstream blob GETs = %d, want %d", n, wantBlobs)
	}
	if res.Blobs != wantBlobs || res.Manifests != 3 || res.Bytes != wantBytes {
		t.Errorf("received %d manifests, %d blobs, %d bytes; want 3, %d, %d", res.Manifests, res.Blobs, res.Bytes, wantBlobs, wantBytes)
	}
	// A cold cache: everything received was fetched from upstream.
	if res.Fetched != wantBytes || res.Cached() != 0 {
		t.Errorf("fetched %d, cached %d; want %d and 0", res.Fetched, res.Cached(), wantBytes)
	}
	for _, s := range []string{"ok  ", up.Host() + "/team/app:v1", "linux/amd64,linux/arm64", "8 blobs", "already cached: 0 B"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("summary does not say %q:\n%s", s, out.String())
		}
	}
	if !strings.Contains(bar.String(), "100%") || !strings.Contains(bar.String(), "8 blobs") {
		t.Errorf("progress bar did not reach 100%%:\n%q", bar.String())
	}

	// Nodes of both platforms now pull with no GET upstream at all.
	up.Reset()
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		plat, err := puller.ParsePlatform(p)
		if err != nil {
			t.Fatal(err)
		}
		node := &puller.Puller{Base: base, Namespace: up.Host(), Platforms: []v1.Platform{plat}}
		if _, err := node.Pull(t.Context(), "team/app", "v1"); err != nil {
			t.Fatalf("%s node: %v", p, err)
		}
	}
	if n := up.Count(http.MethodGet, "", ""); n != up.Count(http.MethodGet, registrytest.KindToken, "") {
		t.Errorf("upstream GETs after warm = %d, want none but tokens: %+v", n, up.Requests())
	}
	if n := up.Count(http.MethodGet, registrytest.KindBlob, "") + up.Count(http.MethodGet, registrytest.KindCDN, ""); n != 0 {
		t.Errorf("upstream blob GETs after warm = %d, want 0", n)
	}

	// Warming again fetches nothing.
	out.Reset()
	res, err = warmArgs(t, "--target", base, up.Host()+"/team/app:v1").run(t.Context(), nil, &out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Bytes != wantBytes || res.Fetched != 0 || res.Cached() != wantBytes {
		t.Errorf("second warm: received %d, fetched %d, cached %d; want %d, 0, %d", res.Bytes, res.Fetched, res.Cached(), wantBytes, wantBytes)
	}
	if want := fmt.Sprintf("fetched from upstream: 0 B, already cached: %s", size(wantBytes)); !strings.Contains(out.String(), want) {
		t.Errorf("summary does not say %q:\n%s", want, out.String())
	}
}

// TestWarmFromFileOnePlatform: images from standard input, one platform,
// a failing image reported and the rest warmed.
func TestWarmFromFileOnePlatform(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{})
	idx := up.SeedIndex(t, "team/app", "v1", []string{"linux/amd64", "linux/arm64"}, 2, 16<<10)
	single := up.SeedImage(t, "team/tool", "2.0", 1, 8<<10)
	base := startCacheyd(t, up, t.TempDir())
	up.Reset()

	list := fmt.Sprintf("# scale-up list\n%[1]s/team/app:v1\n%[1]s/team/tool:2.0  # single platform\n%[1]s/team/gone:v1\n", up.Host())
	var out bytes.Buffer
	w := warmArgs(t, "--target", base, "-f", "-", "--platform", "linux/arm64", "--no-progress")
	res, err := w.run(t.Context(), strings.NewReader(list), &out, nil)
	if err == nil || err.Error() != "warm: 1 of 3 images failed" {
		t.Fatalf("warm: %v, want 1 of 3 failed\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "FAIL  "+up.Host()+"/team/gone:v1") {
		t.Errorf("summary does not report the missing image:\n%s", out.String())
	}
	_, amd := platformBlobs(t, idx, "linux/amd64")
	_, arm := platformBlobs(t, idx, "linux/arm64")
	m, _ := single.Manifest()
	want := append(append([]v1.Descriptor{m.Config}, m.Layers...), arm...)
	for _, d := range want {
		if n := up.Count(http.MethodGet, registrytest.KindBlob, d.Digest.String()); n != 1 {
			t.Errorf("upstream GETs of %s = %d, want 1", d.Digest, n)
		}
	}
	for _, d := range amd {
		if n := up.Count(http.MethodGet, registrytest.KindBlob, d.Digest.String()); n != 0 {
			t.Errorf("upstream GETs of amd64 blob %s = %d, want 0", d.Digest, n)
		}
	}
	if res.Blobs != len(want) {
		t.Errorf("blobs = %d, want %d", res.Blobs, len(want))
	}
}

func TestWarmRefusesBadInput(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "no images given"},
		{[]string{"--platform", "amd64", "alpine"}, "--platform"},
		{[]string{"-f", "/nonexistent/list.txt"}, "--file"},
		{[]string{"NOT/VALID"}, "image"},
	}
	for _, tt := range tests {
		_, err := warmArgs(t, tt.args...).run(t.Context(), strings.NewReader(""), &bytes.Buffer{}, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("warm %q: %v, want an error with %q", tt.args, err, tt.want)
		}
	}
}

// TestWarmReportsItsCountedPulls: the cost a warm reports is the registry's
// own count of pulls, the budget left is what the registry said last, and
// a dry run, which costs no counted pull, says what the warm would cost.
func TestWarmReportsItsCountedPulls(t *testing.T) {
	const limit = 100
	up := registrytest.New(t, registrytest.Options{Token: true, PullLimit: limit})
	up.SeedIndex(t, "team/app", "v1", []string{"linux/amd64", "linux/arm64"}, 2, 8<<10)
	up.SeedImage(t, "team/tool", "2.0", 1, 4<<10)
	base := startCacheyd(t, up, t.TempDir())
	up.Reset()
	app, tool := up.Host()+"/team/app:v1", up.Host()+"/team/tool:2.0"

	dry := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		w := warmArgs(t, append([]string{"--target", base, "--dry-run"}, args...)...)
		if _, err := w.run(t.Context(), nil, &out, nil); err != nil {
			t.Fatalf("dry run %q: %v\n%s", args, err, out.String())
		}
		return out.String()
	}
	warmOf := func(wantPulls int, args ...string) string {
		t.Helper()
		before, _ := up.Pulls()
		var out bytes.Buffer
		res, err := warmArgs(t, append([]string{"--target", base, "--no-progress"}, args...)...).run(t.Context(), nil, &out, nil)
		if err != nil {
			t.Fatalf("warm %q: %v\n%s", args, err, out.String())
		}
		after, _ := up.Pulls()
		if res.Pulls != int64(after-before) || res.Pulls != int64(wantPulls) {
			t.Errorf("warm %q: reported %d counted pulls; the registry counted %d, want %d", args, res.Pulls, after-before, wantPulls)
		}
		want := []warm.Budget{{Registry: up.Host(), Remaining: int64(limit - after), Limit: limit}}
		if diff := cmp.Diff(want, res.Budgets); diff != "" {
			t.Errorf("warm %q: budgets (-want +got):\n%s", args, diff)
		}
		return out.String()
	}
	steps := []struct {
		name    string
		dryArgs []string
		want    string // what the dry run says it would cost
		warm    []string
		pulls   int // what that warm costs
	}{
		{"cold", []string{app, tool}, "would cost 2 counted pulls for the 2 manifests to fetch, plus one for each chosen platform manifest not cached of 1 indexes", []string{"--platform", "linux/arm64", tool, app}, 3},
		{"one platform held", []string{app, tool}, "would cost at most 1 counted pulls: 1 manifests to fetch", []string{app, tool}, 1},
		{"all held", []string{app, tool}, "would cost at most 0 counted pulls: 0 manifests to fetch", []string{app}, 0},
	}
	for _, st := range steps {
		before, _ := up.Pulls()
		out := dry(st.dryArgs...)
		if after, _ := up.Pulls(); after != before {
			t.Errorf("%s: the dry run cost %d counted pulls, want 0", st.name, after-before)
		}
		if !strings.Contains(out, st.want) {
			t.Errorf("%s: dry run does not say %q:\n%s", st.name, st.want, out)
		}
		out = warmOf(st.pulls, st.warm...)
		if want := fmt.Sprintf("counted pulls: %d\n", st.pulls); !strings.Contains(out, want) {
			t.Errorf("%s: warm does not say %q:\n%s", st.name, want, out)
		}
	}
	if counted, _ := up.Pulls(); counted != 4 {
		t.Errorf("the registry counted %d pulls in all, want 4 (the tool's manifest, the index and one platform's, then the other platform's)", counted)
	}
}
