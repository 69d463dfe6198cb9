module github.com/mpha-dev/mpha/tools/nats

go 1.26.2

require github.com/nats-io/nats-server/v2 v2.15.2
