package disk

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// TestCommitIsDurable: a commit syncs the pending file's bytes before it is
// renamed to its digest's name, and the directory after the rename, so that
// a power loss never leaves a short file under a digest's name.
func TestCommitIsDurable(t *testing.T) {
	d, err := Open(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	<-d.Loaded()
	data := randomBytes(t, 10<<10)
	dg := oci.FromBytes(data)
	final := d.path(dg)
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	var fileSynced, dirSynced bool
	d.syncFile = func(f *os.File) error {
		if filepath.Dir(f.Name()) == filepath.Join(d.dir, pendingDir) {
			if exists(final) {
				t.Error("content synced after its rename")
			}
			fileSynced = true
		}
		return f.Sync()
	}
	d.syncDir = func(dir string) error {
		if dir == filepath.Dir(final) {
			if !exists(final) || !exists(final+metaSuffix) {
				t.Error("directory synced before the renames")
			}
			dirSynced = true
		}
		return syncDirectory(dir)
	}
	p, err := d.Create(int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.File().Close()
	if _, err := p.File().Write(data); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Commit(tier.Entry{Digest: dg, Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	if !fileSynced {
		t.Error("the pending file was not synced before its rename")
	}
	if !dirSynced {
		t.Error("the directory was not synced after the rename")
	}
	if got, err := os.ReadFile(final); err != nil || !bytes.Equal(got, data) {
		t.Errorf("committed file: %v", err)
	}
}

// BenchmarkCommit measures a commit with its syncs and without them, for a
// manifest-sized and a layer-sized object: the price of durability.
//
//	go test -run XXX -bench Commit -benchtime 200x ./tier/disk
func BenchmarkCommit(b *testing.B) {
	for _, size := range []int{4 << 10, 16 << 20} {
		for _, durable := range []bool{true, false} {
			b.Run(fmt.Sprintf("size=%d/durable=%v", size, durable), func(b *testing.B) {
				d, err := Open(Config{Dir: b.TempDir()})
				if err != nil {
					b.Fatal(err)
				}
				<-d.Loaded()
				if !durable {
					d.syncFile = func(*os.File) error { return nil }
					d.syncDir = func(string) error { return nil }
				}
				data := randomBytes(b, size)
				b.SetBytes(int64(size))
				for i := 0; b.Loop(); i++ {
					binary.BigEndian.PutUint64(data, uint64(i)) // a new digest each time
					p, err := d.Create(int64(size))
					if err != nil {
						b.Fatal(err)
					}
					if _, err := p.File().Write(data); err != nil {
						b.Fatal(err)
					}
					if _, err := p.Commit(tier.Entry{Digest: oci.FromBytes(data), Size: int64(size)}); err != nil {
						b.Fatal(err)
					}
					p.File().Close()
				}
			})
		}
	}
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}
