package disk

import (
	"encoding/hex"
	"slices"
	"time"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// The index holds every committed object in one 64-byte slot and one entry
// of a map from its hash's 32 bytes to the slot, whatever its record says:
// 118 to 148 bytes of heap an object, measured (bench/README.md, "Restart
// with many objects"). What only some objects have lives beside it:
// the digests whose hash is longer (sha512) in long, and the source lists
// of content fetched with a client's credentials in sources. Media types are
// interned: a cache holds a handful. The order of use is a list threaded
// through the slots by their numbers, most recently used at the head.
// Slots live in chunks of a fixed size, so that a growing index never
// copies itself, and a removed object's slot is reused.

// slot is one object in the index.
type slot struct {
	sum        [32]byte // the digest's hash; its first 32 bytes when longer
	size       int64
	used       int64 // when a use was last recorded on the file, Unix ns
	prev, next int32 // neighbours in the order of use; none: -1
	media      uint16
	flags      uint8
}

const (
	verifiedFlag = 1 << iota // checked since an unclean stop, or trusted
	longFlag                 // the digest is in index.long
	sourcesFlag              // the source lists are in index.sources
	coldFlag                 // found on disk by the load, not used since
)

const chunkBits = 12 // 4096 slots (256 KiB) a chunk

type sourceLists struct{ private, public []string }

// index is the disk tier's index and order of use. Disk.mu guards it.
type index struct {
	keys       map[[32]byte]int32
	chunks     [][]slot
	free       []int32 // slots of removed objects
	slots      int32   // slots handed out so far
	head, tail int32   // most and least recently used; none: -1
	media      []string
	mediaOf    map[string]uint16
	long       map[int32]oci.Digest
	sources    map[int32]sourceLists
}

func newIndex() *index {
	return &index{
		keys: map[[32]byte]int32{}, head: -1, tail: -1,
		media: []string{""}, mediaOf: map[string]uint16{"": 0},
		long: map[int32]oci.Digest{}, sources: map[int32]sourceLists{},
	}
}

func (x *index) at(i int32) *slot { return &x.chunks[i>>chunkBits][i&(1<<chunkBits-1)] }

// len is the number of objects indexed.
func (x *index) len() int { return len(x.keys) }

// keyOf is the map key of dg: its hash's first 32 bytes. dg is valid.
func keyOf(dg oci.Digest) (k [32]byte) {
	h := dg.Hex()
	for i := range k {
		k[i] = unhex(h[2*i])<<4 | unhex(h[2*i+1])
	}
	return k
}

func unhex(c byte) byte {
	if c >= 'a' {
		return c - 'a' + 10
	}
	return c - '0'
}

// find returns dg's slot number.
func (x *index) find(dg oci.Digest) (int32, bool) {
	i, ok := x.keys[keyOf(dg)]
	if !ok {
		return 0, false
	}
	long := len(dg.Hex()) > 2*len(slot{}.sum)
	if long != (x.at(i).flags&longFlag != 0) || long && x.long[i] != dg {
		return 0, false
	}
	return i, true
}

// digest is the digest of the object in slot i.
func (x *index) digest(i int32) oci.Digest {
	if s := x.at(i); s.flags&longFlag == 0 {
		return oci.Digest("sha256:" + hex.EncodeToString(s.sum[:]))
	}
	return x.long[i]
}

// entry returns the record of the object in slot i.
func (x *index) entry(i int32) entry {
	s := x.at(i)
	e := entry{
		Entry:    tier.Entry{Digest: x.digest(i), Size: s.size, MediaType: x.media[s.media]},
		verified: s.flags&verifiedFlag != 0,
		touched:  time.Unix(0, s.used),
	}
	if s.flags&sourcesFlag != 0 {
		src := x.sources[i]
		e.Private, e.Public = slices.Clone(src.private), slices.Clone(src.public)
	}
	return e
}

// get returns dg's record.
func (x *index) get(dg oci.Digest) (entry, bool) {
	i, ok := x.find(dg)
	if !ok {
		return entry{}, false
	}
	return x.entry(i), true
}

// use marks dg as the most recently used and returns its record; when no
// use was recorded on the file for every, it takes now as the one to be.
func (x *index) use(dg oci.Digest, now time.Time, every time.Duration) (e entry, touch, ok bool) {
	i, ok := x.find(dg)
	if !ok {
		return entry{}, false, false
	}
	s := x.at(i)
	s.flags &^= coldFlag
	if now.UnixNano()-s.used >= int64(every) {
		s.used, touch = now.UnixNano(), true
	}
	x.unlink(i)
	x.linkFront(i)
	return x.entry(i), touch, true
}

// add indexes e, which is not indexed: as the most recently used, or,
// cold, as the least (the load's, ordered by settle).
func (x *index) add(e entry, cold bool) {
	var i int32
	if n := len(x.free); n > 0 {
		i, x.free = x.free[n-1], x.free[:n-1]
	} else {
		if x.slots>>chunkBits == int32(len(x.chunks)) {
			x.chunks = append(x.chunks, make([]slot, 1<<chunkBits))
		}
		i = x.slots
		x.slots++
	}
	s := x.at(i)
	*s = slot{sum: keyOf(e.Digest), size: e.Size, used: e.touched.UnixNano()}
	if len(e.Digest.Hex()) > 2*len(s.sum) {
		s.flags |= longFlag
		x.long[i] = e.Digest
	}
	x.keys[s.sum] = i
	x.setRecord(i, e.Entry)
	if e.verified {
		s.flags |= verifiedFlag
	}
	if cold {
		s.flags |= coldFlag
		x.linkBack(i)
		return
	}
	x.linkFront(i)
}

// setRecord makes e's media type and sources those of slot i.
func (x *index) setRecord(i int32, e tier.Entry) {
	s := x.at(i)
	m, ok := x.mediaOf[e.MediaType]
	if !ok && len(x.media) <= 1<<16-1 {
		m = uint16(len(x.media))
		x.media = append(x.media, e.MediaType)
		x.mediaOf[e.MediaType] = m
	}
	s.media = m
	delete(x.sources, i)
	s.flags &^= sourcesFlag
	if len(e.Private) > 0 || len(e.Public) > 0 {
		x.sources[i] = sourceLists{private: slices.Clone(e.Private), public: slices.Clone(e.Public)}
		s.flags |= sourcesFlag
	}
}

// record replaces dg's media type and sources with e's.
func (x *index) record(dg oci.Digest, e tier.Entry) {
	if i, ok := x.find(dg); ok {
		x.setRecord(i, e)
	}
}

// verified marks dg as checked.
func (x *index) verified(dg oci.Digest) {
	if i, ok := x.find(dg); ok {
		x.at(i).flags |= verifiedFlag
	}
}

// remove drops dg and returns its size.
func (x *index) remove(dg oci.Digest) (int64, bool) {
	i, ok := x.find(dg)
	if !ok {
		return 0, false
	}
	s := x.at(i)
	size := s.size
	x.unlink(i)
	delete(x.keys, s.sum)
	delete(x.long, i)
	delete(x.sources, i)
	*s = slot{}
	x.free = append(x.free, i)
	return size, true
}

// oldest returns the least recently used object's digest and size.
func (x *index) oldest() (oci.Digest, int64, bool) {
	if x.tail < 0 {
		return "", 0, false
	}
	return x.digest(x.tail), x.at(x.tail).size, true
}

// settle orders the objects the load found and nobody used since, all
// behind every other, by the uses their files recorded, least recent last.
func (x *index) settle() {
	var cold []int32
	for i := x.head; i >= 0; i = x.at(i).next {
		if x.at(i).flags&coldFlag != 0 {
			cold = append(cold, i)
		}
	}
	slices.SortStableFunc(cold, func(a, b int32) int {
		ua, ub := x.at(a).used, x.at(b).used
		switch {
		case ua > ub:
			return -1
		case ua < ub:
			return 1
		}
		return 0
	})
	for _, i := range cold {
		x.unlink(i)
		x.at(i).flags &^= coldFlag
		x.linkBack(i)
	}
}

func (x *index) unlink(i int32) {
	s := x.at(i)
	if s.prev >= 0 {
		x.at(s.prev).next = s.next
	} else {
		x.head = s.next
	}
	if s.next >= 0 {
		x.at(s.next).prev = s.prev
	} else {
		x.tail = s.prev
	}
	s.prev, s.next = -1, -1
}

func (x *index) linkFront(i int32) {
	s := x.at(i)
	s.prev, s.next = -1, x.head
	if x.head >= 0 {
		x.at(x.head).prev = i
	} else {
		x.tail = i
	}
	x.head = i
}

func (x *index) linkBack(i int32) {
	s := x.at(i)
	s.prev, s.next = x.tail, -1
	if x.tail >= 0 {
		x.at(x.tail).next = i
	} else {
		x.head = i
	}
	x.tail = i
}
