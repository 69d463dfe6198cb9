module github.com/mpha-dev/mpha/tools/externaldns

go 1.26.8

require sigs.k8s.io/external-dns v0.19.0
