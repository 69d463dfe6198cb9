package ociimage_test

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/mpha-dev/mpha/internal/ociimage"
)

// The tarball `make image` writes loads with go-containerregistry: tagged as the chart's default
// image, run as nonroot from /usr/local/bin/mpha, with the CA bundle, and a binary that runs.
func TestImageTarball(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the mpha binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "mpha")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-X github.com/mpha-dev/mpha/internal/version.version=v9.8.7-test",
		"-o", bin, "github.com/mpha-dev/mpha/cmd/mpha")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ref, err := ociimage.ChartReference("../../charts/mpha")
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	img, err := ociimage.Build(ociimage.Options{Binary: bin, Arch: runtime.GOARCH, Ref: ref, Version: "v9.8.7-test", Revision: "abc123", Created: created})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "mpha-image.tar")
	if err := ociimage.Write(out, ref, img); err != nil {
		t.Fatal(err)
	}

	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("loading the tarball as %s: %v", ref, err)
	}
	cf, err := loaded.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/usr/local/bin/mpha"}) || cf.Config.User != "65532:65532" {
		t.Errorf("entrypoint %q, user %q; want /usr/local/bin/mpha as 65532:65532", cf.Config.Entrypoint, cf.Config.User)
	}
	for k, want := range map[string]string{"org.opencontainers.image.version": "v9.8.7-test", "org.opencontainers.image.revision": "abc123",
		"org.opencontainers.image.source": ociimage.Source} {
		if got := cf.Config.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	if !cf.Created.Time.Equal(created) {
		t.Errorf("created %v, want %v", cf.Created, created)
	}

	// The files, from the flattened layers.
	files := map[string]*tar.Header{}
	layers, err := loaded.Layers()
	if err != nil {
		t.Fatal(err)
	}
	extracted := filepath.Join(dir, "extracted-mpha")
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = h
			if h.Name == "usr/local/bin/mpha" {
				f, err := os.OpenFile(extracted, os.O_CREATE|os.O_WRONLY, 0o755)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.Copy(f, tr); err != nil {
					t.Fatal(err)
				}
				f.Close()
			}
		}
		rc.Close()
	}
	if h := files["usr/local/bin/mpha"]; h == nil || h.Mode&0o111 != 0o111 || h.Uid != 0 {
		t.Fatalf("the binary in the image: %+v; want root-owned and executable by all", h)
	}
	if h := files["tmp/"]; h == nil || h.Mode&0o1777 != 0o1777 {
		t.Errorf("/tmp: %+v, want mode 1777", h)
	}
	for _, f := range []string{"etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt"} {
		if h := files[f]; h == nil || h.Size == 0 {
			t.Errorf("%s missing or empty", f)
		}
	}
	for _, h := range files {
		if !h.ModTime.Equal(created) {
			t.Errorf("%s stamped %v, want %v (reproducible layers)", h.Name, h.ModTime, created)
		}
	}
	v, err := exec.Command(extracted, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(v), "v9.8.7-test") {
		t.Errorf("the image's binary, run: %v\n%s", err, v)
	}

	// The same inputs make the same image.
	again, err := ociimage.Build(ociimage.Options{Binary: bin, Arch: runtime.GOARCH, Ref: ref, Version: "v9.8.7-test", Revision: "abc123", Created: created})
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("rebuild digest %s != %s", d2, d1)
	}
}

func TestBuildRefusesANonLinuxBinary(t *testing.T) {
	p := filepath.Join(t.TempDir(), "mpha")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ociimage.Build(ociimage.Options{Binary: p, Arch: "amd64"}); err == nil || !strings.Contains(err.Error(), "ELF") {
		t.Errorf("err = %v, want a refusal naming ELF", err)
	}
}
