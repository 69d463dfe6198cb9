// Command mkimage builds mpha's container image into a docker-loadable tarball (`make image`):
// no Docker daemon, no registry. The tag defaults to the image the chart runs by default.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/mpha-dev/mpha/internal/ociimage"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run() error {
	var o ociimage.Options
	var out, chart, created string
	flag.StringVar(&o.Binary, "binary", "", "the mpha executable (linux, CGO_ENABLED=0)")
	flag.StringVar(&o.Arch, "arch", "amd64", "the binary's GOARCH")
	flag.StringVar(&o.Ref, "tag", "", "the image's name:tag (default: the chart's default image)")
	flag.StringVar(&chart, "chart", "charts/mpha", "the chart whose default image names the tarball's tag")
	flag.StringVar(&o.Version, "version", "", "org.opencontainers.image.version")
	flag.StringVar(&o.Revision, "revision", "", "org.opencontainers.image.revision")
	flag.StringVar(&created, "created", "", "RFC 3339 time stamped on the image and its files (default the Unix epoch)")
	flag.StringVar(&o.CACerts, "ca-certs", ociimage.DefaultCACerts, "the CA bundle copied into the image")
	flag.StringVar(&out, "out", "dist/mpha-image.tar", "the tarball to write")
	flag.Parse()
	if o.Ref == "" {
		ref, err := ociimage.ChartReference(chart)
		if err != nil {
			return err
		}
		o.Ref = ref
	}
	if created != "" {
		t, err := time.Parse(time.RFC3339, created)
		if err != nil {
			return fmt.Errorf("-created: %w", err)
		}
		o.Created = t.UTC()
	}
	img, err := ociimage.Build(o)
	if err != nil {
		return err
	}
	if err := ociimage.Write(out, o.Ref, img); err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s: %s (%s, linux/%s)\n", out, o.Ref, d, o.Arch)
	return nil
}
