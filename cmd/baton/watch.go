package main

import (
	"context"
	"os"
	"strings"
	"time"
)

// stringsFlag is a repeatable string flag.
type stringsFlag []string

func (f *stringsFlag) String() string     { return strings.Join(*f, ",") }
func (f *stringsFlag) Set(s string) error { *f = append(*f, s); return nil }

// watchInterval is how often "baton run -watch" looks at its files:
// stat(2) of a few files costs nothing, and half a second after a deploy
// is soon enough; a change counts only once it has held for one more look
// (a file still being written), so a reload follows within a second.
const watchInterval = 500 * time.Millisecond

// fileStamp is what a change of a watched file changes: a deploy that
// renames a new binary into place changes the inode, one that rewrites it
// the size or the modification time. A missing file has the zero stamp.
type fileStamp struct {
	ino, size int64
	mtime     time.Time
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{ino: inodeOf(fi), size: fi.Size(), mtime: fi.ModTime()}
}

// watchFiles calls reload once a watched file has changed and then stayed
// the same for one more look (so a binary still being copied is not
// started half-written), and again for each later change. A file that
// disappears is not a change: a deploy may remove it just before it puts
// the new one in place. It returns when ctx is done.
func watchFiles(ctx context.Context, paths []string, every time.Duration, reload func(context.Context) error, logf func(format string, args ...any)) {
	last := make([]fileStamp, len(paths))
	for i, p := range paths {
		last[i] = stampOf(p)
	}
	pending := make([]fileStamp, len(paths)) // a change seen once, not yet settled
	changed := make([]bool, len(paths))
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var settled []string
		for i, p := range paths {
			now := stampOf(p)
			switch {
			case now == (fileStamp{}) || now == last[i] && !changed[i]:
			case !changed[i] || now != pending[i]:
				changed[i], pending[i] = true, now // wait for it to settle
			default:
				changed[i], last[i] = false, now
				settled = append(settled, p)
			}
		}
		if len(settled) == 0 {
			continue
		}
		logf("%v changed: reloading", settled)
		if err := reload(ctx); err != nil {
			logf("reload after the change failed; the old generation serves on: %v", err)
		}
	}
}
