package bench

import (
	"context"
	"fmt"
	"io"
)

// ServeUpstream runs only the fake upstream of cfg (addresses, latency,
// bandwidth, pull limit), seeded with cfg.Images, until ctx ends. It first
// writes what it holds to out, one object a line, for scripts:
//
//	upstream <registry name> <URL>
//	cdn <host:port>
//	tag <repository> <tag> <digest>
//	manifest <repository> <digest> <size>
//	blob <repository> <digest> <size>
//
// listing what a node of cfg.Platform pulls. Lines starting with '#' are
// comments. Pull accounting never starts a new window here.
func ServeUpstream(ctx context.Context, cfg Config, out io.Writer) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	hub, err := startHub(cfg)
	if err != nil {
		return err
	}
	defer hub.close()
	cat, err := seedImages(ctx, hub.reg, cfg.Images, cfg.Platform, "")
	if err != nil {
		return fmt.Errorf("bench: seed: %w", err)
	}
	hub.reset()
	fmt.Fprintf(out, "# the fake upstream; map it with: cacheyd --registry-url %s=%s --allow-registry %s\n",
		hub.reg.Host(), hub.reg.URL(), hub.reg.CDNHost())
	fmt.Fprintf(out, "upstream %s %s\n", hub.reg.Host(), hub.reg.URL())
	fmt.Fprintf(out, "cdn %s\n", hub.reg.CDNHost())
	for _, img := range cat.images {
		fmt.Fprintf(out, "tag %s %s %s\n", img.repo, img.tag, img.want[0].digest)
		for _, o := range img.want {
			kind := "blob"
			if o.manifest {
				kind = "manifest"
			}
			fmt.Fprintf(out, "%s %s %s %d\n", kind, img.repo, o.digest, o.size)
		}
	}
	<-ctx.Done()
	return nil
}
