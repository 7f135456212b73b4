// Package s3 is the object-storage tier: verified public content kept in an
// S3-compatible bucket (AWS S3, GCS's interoperability API, R2, MinIO-style
// stores) behind the replicas, so that the cache outlives its pods and is
// shared by every cluster that names the bucket.
//
// Objects are keyed by digest as distribution lays them out,
// <Prefix>blobs/sha256/<2 hex>/<hex>, with the media type in the object's
// metadata. Reads are GETs by digest (ranged for a window), answered as a
// registry answers them; the cache verifies what it reads, as from any
// origin. Writes are uploads in the background from a committed file: a
// bounded queue (full: the upload is dropped and counted, a pull never
// waits), a bounded number at once, a HEAD first and a conditional create
// (If-None-Match: *), multipart above the part size (minio-go aborts a
// multipart upload that fails). The bucket is never a coordination
// mechanism: an object is invisible until its upload completes. cacheyd
// never deletes from the bucket; its lifecycle rule evicts.
package s3
