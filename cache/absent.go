package cache

import (
	"time"

	"github.com/cacheyd/cacheyd/oci"
)

// A registry's 404 to a listing (a registry without the referrers API
// answers every referrers request so, and oras asks on every discover) is
// kept for TagTTL, as a listing is, so that asking again within it costs no
// upstream request. Only the 404 asked as cacheyd is kept, and it answers
// only requests without credentials: one with credentials may be shown
// what an anonymous one is not, so it asks (the ladder, lookup.go).

// maxAbsent bounds the table of listings upstream has not; past it an
// arbitrary entry is dropped, which costs one upstream request.
const maxAbsent = 10_000

// absentListing is upstream's 404 to a listing, as it gave it.
type absentListing struct {
	err     error // the *oci.Error 404, passed on unaltered
	checked time.Time
}

type absentTable = table[listKey, absentListing]

func newAbsentTable() *absentTable { return newTable[listKey, absentListing](maxAbsent, 0, nil) }

// knownAbsent returns the 404 kept for req's listing, if req may be
// answered with it and it is younger than TagTTL.
func (c *Cache) knownAbsent(key listKey, req *oci.Request) (error, bool) {
	if req.Authorization != "" {
		return nil, false
	}
	e, ok := c.absent.get(key)
	if !ok || e.err == nil || time.Since(e.checked) >= c.cfg.TagTTL {
		return nil, false
	}
	return e.err, true
}

// keepAbsent keeps err, the end of a lookup of req's listing, if it is
// upstream's 404 to a request without credentials, which the ladder asked
// as cacheyd.
func (c *Cache) keepAbsent(key listKey, req *oci.Request, err error) {
	if req.Authorization == "" && failed(err) == rungNotFound {
		c.absent.put(key, absentListing{err: err, checked: time.Now()})
	}
}

// forgetAbsent drops a 404 kept for a listing upstream now has.
func (c *Cache) forgetAbsent(key listKey) {
	if e, ok := c.absent.get(key); ok && e.err != nil {
		c.absent.put(key, absentListing{})
	}
}
