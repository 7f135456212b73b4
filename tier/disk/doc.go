// Package disk is cacheyd's disk tier: content-addressed files under one
// directory, each beside its record, kept within a byte budget by evicting
// the least recently used, durable across power loss, and served at once
// after a restart.
//
// Layout under Config.Dir:
//
//	blobs/<alg>/<hex[:2]>/<hex>        committed content, named by its digest
//	blobs/<alg>/<hex[:2]>/<hex>.meta   its record (tier.Entry): size, media
//	                                   type, sources; and the file's
//	                                   modification time as committed
//	pending/<random>                   content being written
//	clean                              present only while stopped after a
//	                                   clean Close
//
// Content is written into a pending file (Create), which the writer fills
// and verifies, then committed (Pending.Commit): the file's bytes and its
// record are synced before the rename to its digest's name and the
// directory after it, so that a power loss cannot leave a short file under
// a digest's name. On start, pending leftovers are removed, and an object
// counts only with its record and the recorded size; after an unclean stop
// (no clean marker) every object is verified again before or while it is
// first served, and after a clean one every object whose file's
// modification time is not the one its record holds (written to since its
// commit; verify.go). Names come only from validated digests, never from
// anything a client typed.
//
// The budget counts committed content and what pending files have claimed
// as their bytes arrived, together (budget.go). The order of use survives
// a restart: a hit touches the file's access time (never its modification
// time, which identifies the content), at most once a minute per object,
// and the index is rebuilt in that order (on Linux; elsewhere in the order
// of commits).
//
// On start the index is rebuilt in the background (load.go): Open returns
// at once, a request for an object the load has not reached is answered
// from its file and record, examined as the load examines them, and
// eviction waits for the load's end. The index holds an object in 118 to
// 148 bytes of heap (index.go), whatever its record says.
//
// disk knows nothing of fills, HTTP or policy: it stores what it is given
// and keeps records as tier.Merge says.
package disk
