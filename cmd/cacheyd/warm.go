package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/cacheyd/cacheyd/internal/puller"
	"github.com/cacheyd/cacheyd/internal/warm"
)

// warmCmd is "cacheyd warm": pull images through a running cacheyd so that
// a scale-up finds them cached.
type warmCmd struct {
	Images     []string `arg:"" optional:"" name:"image" help:"Images to pull: alpine, docker.io/library/alpine:3.20, ghcr.io/org/app@sha256:..."`
	File       string   `short:"f" env:"CACHEYD_WARM_FILE" placeholder:"FILE" help:"Also read images from FILE, one a line; # starts a comment; - is standard input."`
	Target     string   `env:"CACHEYD_WARM_TARGET" default:"http://127.0.0.1:30123" help:"The running cacheyd's base URL."`
	Platform   []string `env:"CACHEYD_WARM_PLATFORM" placeholder:"OS/ARCH[/VARIANT]" help:"Pull only this platform of multi-platform images (repeatable; default: every platform, attestations skipped)."`
	Parallel   int      `env:"CACHEYD_WARM_PARALLEL" default:"4" help:"How many requests run at once."`
	NoProgress bool     `env:"CACHEYD_WARM_NO_PROGRESS" help:"Show no progress bar (one is shown only when standard error is a terminal)."`
	DryRun     bool     `env:"CACHEYD_WARM_DRY_RUN" help:"Pull nothing: say how many counted pulls a warm would cost at most, from HEADs and what cacheyd already holds."`
}

// Run warms the images until done or until SIGINT or SIGTERM.
func (w *warmCmd) Run(_ *serveFlags) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var bar io.Writer
	if !w.NoProgress && term.IsTerminal(int(os.Stderr.Fd())) {
		bar = os.Stderr
	}
	_, err := w.run(ctx, os.Stdin, os.Stdout, bar)
	return err
}

// run does the work: images from the arguments and the file (stdin for
// "-"), a progress bar on bar when it is not nil, the summary on out. It
// returns what the warm did, for tests.
func (w *warmCmd) run(ctx context.Context, stdin io.Reader, out, bar io.Writer) (*warm.Result, error) {
	images, err := w.images(stdin)
	if err != nil {
		return nil, err
	}
	if len(images) == 0 {
		return nil, errors.New("warm: no images given (name them, or use --file)")
	}
	var plats []v1.Platform
	for _, s := range w.Platform {
		p, err := puller.ParsePlatform(s)
		if err != nil {
			// The flag's name before the puller's `platform "x": ...`.
			return nil, fmt.Errorf("--%w", err)
		}
		plats = append(plats, p)
	}
	cfg := warm.Config{Target: w.Target, Platforms: plats, Parallel: w.Parallel}
	if w.DryRun {
		return nil, dryRun(ctx, cfg, images, out)
	}
	var pb *progressbar.ProgressBar
	if bar != nil {
		// OnStart runs before any OnBytes, on the goroutine that starts the
		// blob downloads, so pb is set before it is used.
		cfg.OnStart = func(blobs int, bytes int64) {
			if bytes > 0 {
				pb = newBar(bar, blobs, bytes)
			}
		}
		cfg.OnBytes = func(n int64) {
			if pb != nil {
				_ = pb.Add64(n)
			}
		}
	}
	start := time.Now()
	res, err := warm.Run(ctx, cfg, images)
	if pb != nil {
		if err == nil {
			_ = pb.Finish()
		}
		fmt.Fprintln(bar)
	}
	if res == nil {
		return nil, err
	}
	summarize(out, res, w.Target, time.Since(start))
	if err != nil {
		failed := 0
		for _, ir := range res.Images {
			if ir.Err != nil {
				failed++
			}
		}
		if ctx.Err() != nil {
			return res, fmt.Errorf("warm: interrupted: %w", ctx.Err())
		}
		return res, fmt.Errorf("warm: %d of %d images failed", failed, len(res.Images))
	}
	return res, nil
}

// images parses the arguments, then the file.
func (w *warmCmd) images(stdin io.Reader) ([]warm.Image, error) {
	var out []warm.Image
	for _, s := range w.Images {
		im, err := warm.ParseImage(s)
		if err != nil {
			return nil, err
		}
		out = append(out, im)
	}
	if w.File == "" {
		return out, nil
	}
	r := stdin
	if w.File != "-" {
		f, err := os.Open(w.File)
		if err != nil {
			return nil, fmt.Errorf("--file: %w", err)
		}
		defer f.Close()
		r = f
	}
	more, err := warm.ReadList(r)
	if err != nil {
		return nil, fmt.Errorf("--file %s: %w", w.File, err)
	}
	return append(out, more...), nil
}

// newBar is the progress bar over the blob bytes to fetch.
func newBar(w io.Writer, blobs int, bytes int64) *progressbar.ProgressBar {
	return progressbar.NewOptions64(bytes,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(fmt.Sprintf("%d blobs", blobs)),
		progressbar.OptionShowBytes(true),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(true),
	)
}

// summarize prints one line per image and the totals.
func summarize(out io.Writer, res *warm.Result, target string, took time.Duration) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, ir := range res.Images {
		if ir.Err != nil {
			fmt.Fprintf(tw, "FAIL\t%s\t%v\n", ir.Image.Ref, ir.Err)
			continue
		}
		plat := strings.Join(ir.Platforms, ",")
		if plat == "" {
			plat = "single platform"
		}
		fmt.Fprintf(tw, "ok\t%s\t%s\t%s\t%d blobs, %s\n", ir.Image.Ref, ir.Digest.Short(), plat, ir.Blobs, size(ir.Bytes))
	}
	tw.Flush()
	fmt.Fprintf(out, "received %s (%d manifests, %d blobs) in %s\n",
		size(res.Bytes), res.Manifests, res.Blobs, took.Round(100*time.Millisecond))
	if res.Fetched < 0 {
		fmt.Fprintf(out, "fetched from upstream: unknown (could not read %s/metrics)\n", strings.TrimSuffix(target, "/"))
		// A registry itself has no /metrics: what it counts is the
		// manifest GETs sent to it.
		fmt.Fprintf(out, "manifest GETs sent: %d (the counted pulls, when the target is a registry)\n", res.ManifestGETs)
		return
	}
	fmt.Fprintf(out, "fetched from upstream: %s, already cached: %s\n", size(res.Fetched), size(res.Cached()))
	if res.Pulls >= 0 {
		fmt.Fprintf(out, "counted pulls: %d\n", res.Pulls)
	}
	budgets(out, res.Budgets)
}

func size(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }

// budgets prints the pull budgets left.
func budgets(out io.Writer, bs []warm.Budget) {
	for _, b := range bs {
		fmt.Fprintf(out, "pull budget of %s: %d of %d left\n", b.Registry, b.Remaining, b.Limit)
	}
}

// dryRun prints what a warm of images would cost, and returns an error
// when an image could not be looked at.
func dryRun(ctx context.Context, cfg warm.Config, images []warm.Image, out io.Writer) error {
	est, err := warm.DryRun(ctx, cfg, images)
	if est == nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	failed := 0
	for _, ie := range est.Images {
		if ie.Err != nil {
			failed++
			fmt.Fprintf(tw, "FAIL\t%s\t%v\n", ie.Image.Ref, ie.Err)
			continue
		}
		fmt.Fprintf(tw, "ok\t%s\t%s\t%d manifests to fetch\n", ie.Image.Ref, ie.Digest.Short(), ie.Manifests)
	}
	tw.Flush()
	// An index cacheyd does not hold cannot be read without a counted
	// pull, so what its platforms cost is unknown: no upper bound then.
	if est.Indexes == 0 {
		fmt.Fprintf(out, "would cost at most %d counted pulls: %d manifests to fetch\n", est.Manifests, est.Manifests)
	} else {
		fmt.Fprintf(out, "would cost %d counted pulls for the %d manifests to fetch, plus one for each chosen platform manifest not cached of %d indexes (unknown until fetched)\n", est.Manifests, est.Manifests, est.Indexes)
	}
	if est.Pulls > 0 {
		fmt.Fprintf(out, "counted pulls during the dry run: %d (cacheyd evicted a manifest meanwhile, or other clients pulled)\n", est.Pulls)
	}
	budgets(out, est.Budgets)
	if ctx.Err() != nil {
		return fmt.Errorf("warm: interrupted: %w", ctx.Err())
	}
	if failed > 0 {
		return fmt.Errorf("warm: %d of %d images failed", failed, len(est.Images))
	}
	return nil
}
