module github.com/mpha-dev/mpha/tools/lint

go 1.26.2

require honnef.co/go/tools v0.8.2
