// Package rssfloor holds the programs bench/rss-floor.sh measures: what importing a library costs
// a Go process in resident memory before it does anything (the pages its package initialisers
// touch), beside `mpha version`.
package rssfloor
