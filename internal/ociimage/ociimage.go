// Package ociimage builds mpha's container image without a Docker daemon or a registry: a
// distroless/static-like base made from local files (CA certificates, /etc/passwd and /etc/group
// with the nonroot user 65532, /tmp) and one layer holding the statically linked binary, written
// as a docker-loadable tarball with go-containerregistry. It imports nothing of mpha.
package ociimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"sigs.k8s.io/yaml"
)

// Where things are in the image.
const (
	Entrypoint = "/usr/local/bin/mpha"
	// User is distroless's nonroot user and group; the chart's securityContext runs as it too.
	User    = "65532:65532"
	CACerts = "/etc/ssl/certs/ca-certificates.crt"
	// DefaultCACerts is Debian's bundle, the one the base layer copies by default.
	DefaultCACerts = "/etc/ssl/certs/ca-certificates.crt"
	// Source is the OCI source label.
	Source = "https://github.com/mpha-dev/mpha"
)

// Options say what to build.
type Options struct {
	// Binary is the mpha executable for Arch (linux, CGO_ENABLED=0).
	Binary string
	// Arch is the GOARCH of Binary (amd64, arm64).
	Arch string
	// Ref is the image's name and tag (the chart's default: ChartReference).
	Ref string
	// Version and Revision become OCI labels (org.opencontainers.image.version, .revision).
	Version, Revision string
	// Created stamps the image and every file in it, so that a rebuild of the same inputs is
	// byte-identical (default the Unix epoch).
	Created time.Time
	// CACerts is the CA bundle copied into the image (default DefaultCACerts).
	CACerts string
}

// Build makes the image.
func Build(o Options) (v1.Image, error) {
	if o.Binary == "" || o.Arch == "" {
		return nil, fmt.Errorf("building the image: a binary and its architecture are required")
	}
	if o.CACerts == "" {
		o.CACerts = DefaultCACerts
	}
	if o.Created.IsZero() {
		o.Created = time.Unix(0, 0).UTC()
	}
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("reading the binary: %w", err)
	}
	if !bytes.HasPrefix(bin, []byte("\x7fELF")) {
		return nil, fmt.Errorf("%s is not a Linux (ELF) executable", o.Binary)
	}
	certs, err := os.ReadFile(o.CACerts)
	if err != nil {
		return nil, fmt.Errorf("reading the CA certificates (install Debian's ca-certificates): %w", err)
	}
	base, err := layer(o.Created, []file{
		{path: "etc/", mode: 0o755, dir: true},
		{path: "etc/passwd", mode: 0o644, body: []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{path: "etc/group", mode: 0o644, body: []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")},
		{path: "etc/nsswitch.conf", mode: 0o644, body: []byte("hosts: files dns\n")},
		{path: "etc/ssl/", mode: 0o755, dir: true},
		{path: "etc/ssl/certs/", mode: 0o755, dir: true},
		{path: strings.TrimPrefix(CACerts, "/"), mode: 0o644, body: certs},
		{path: "home/", mode: 0o755, dir: true},
		{path: "home/nonroot/", mode: 0o700, dir: true, uid: 65532},
		{path: "root/", mode: 0o700, dir: true},
		{path: "tmp/", mode: 0o1777, dir: true},
	})
	if err != nil {
		return nil, err
	}
	app, err := layer(o.Created, []file{
		{path: "usr/", mode: 0o755, dir: true},
		{path: "usr/local/", mode: 0o755, dir: true},
		{path: "usr/local/bin/", mode: 0o755, dir: true},
		{path: strings.TrimPrefix(Entrypoint, "/"), mode: 0o755, body: bin},
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, base, app)
	if err != nil {
		return nil, fmt.Errorf("building the image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", o.Arch
	cf.Created = v1.Time{Time: o.Created}
	cf.Config = v1.Config{
		Entrypoint: []string{Entrypoint},
		Cmd:        []string{"agent", "--config=/etc/mpha/config.yaml"},
		User:       User,
		WorkingDir: "/home/nonroot",
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=" + CACerts, "HOME=/home/nonroot"},
		Labels: map[string]string{
			"org.opencontainers.image.title":       "mpha",
			"org.opencontainers.image.description": "mpha: a highly available TSB Management Plane, the GitOps way",
			"org.opencontainers.image.source":      Source,
			"org.opencontainers.image.version":     o.Version,
			"org.opencontainers.image.revision":    o.Revision,
			"org.opencontainers.image.created":     o.Created.Format(time.RFC3339),
		},
	}
	return mutate.ConfigFile(img, cf)
}

// Write writes img as a docker-loadable tarball (`docker load -i`, `ctr images import`,
// `kind load image-archive`) tagged ref.
func Write(path, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", ref, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

type file struct {
	path string
	mode int64
	dir  bool
	uid  int
	body []byte
}

// layer is an uncompressed tar of files, every header stamped with the same time.
func layer(at time.Time, files []file) (v1.Layer, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		h := &tar.Header{Name: f.path, Mode: f.mode, ModTime: at, Uid: f.uid, Gid: f.uid, Format: tar.FormatPAX}
		if f.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", f.path, err)
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", f.path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := b.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
}

// ChartReference is the image the chart at dir runs by default: values.yaml's
// image.repository, tagged with Chart.yaml's appVersion.
func ChartReference(dir string) (string, error) {
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	var values struct {
		Image struct {
			Repository string `json:"repository"`
			Tag        string `json:"tag"`
		} `json:"image"`
	}
	for f, into := range map[string]any{"Chart.yaml": &chart, "values.yaml": &values} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return "", fmt.Errorf("reading the chart: %w", err)
		}
		if err := yaml.Unmarshal(b, into); err != nil {
			return "", fmt.Errorf("chart %s: %w", f, err)
		}
	}
	tag := values.Image.Tag
	if tag == "" {
		tag = chart.AppVersion
	}
	if values.Image.Repository == "" || tag == "" {
		return "", fmt.Errorf("chart %s: no image.repository or appVersion", dir)
	}
	return values.Image.Repository + ":" + tag, nil
}
