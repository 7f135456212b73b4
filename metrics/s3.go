package metrics

import "github.com/prometheus/client_golang/prometheus"

// S3 are the object-storage tier's collectors (package tier/s3).
type S3 struct {
	// Reads counts the tier's reads of objects by result: hit, miss (not
	// in the bucket) or error (the store failed; the next source is asked).
	Reads *prometheus.CounterVec // result
	// ReadBytes counts body bytes read from the bucket.
	ReadBytes prometheus.Counter
	// ReadErrors counts failed reads by kind: timeout (no answer, or a
	// body that stalled, within --s3-timeout), denied (403: keys or
	// policy), unreachable (no connection) or other.
	ReadErrors *prometheus.CounterVec // kind
	// Uploads counts uploads by result: stored, present (the bucket had the
	// object already), failed, or dropped (the queue was full).
	Uploads *prometheus.CounterVec // result
	// WrittenBytes counts bytes of objects stored in the bucket.
	WrittenBytes prometheus.Counter
	// RequestDuration observes S3 requests until their answer's headers, by
	// op: get, head, put (a whole upload, all its parts).
	RequestDuration *prometheus.HistogramVec // op
}

func newS3() S3 {
	return S3{
		Reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_s3_reads_total", Help: "Reads from the object-storage tier, by result (hit, miss, error).",
		}, []string{"result"}),
		ReadBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cacheyd_s3_read_bytes_total", Help: "Body bytes read from the object-storage tier.",
		}),
		ReadErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_s3_read_errors_total", Help: "Failed reads from the object-storage tier, by kind (timeout, denied, unreachable, other).",
		}, []string{"kind"}),
		Uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_s3_uploads_total", Help: "Uploads to the object-storage tier, by result (stored, present, failed, dropped).",
		}, []string{"result"}),
		WrittenBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cacheyd_s3_written_bytes_total", Help: "Bytes of objects stored in the object-storage tier.",
		}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cacheyd_s3_request_duration_seconds", Help: "Object-storage requests until their answer, by op (get, head, put).",
			Buckets: durationBuckets,
		}, []string{"op"}),
	}
}

// collectors are the S3 collectors, to register.
func (s S3) collectors() []prometheus.Collector {
	return []prometheus.Collector{s.Reads, s.ReadBytes, s.ReadErrors, s.Uploads, s.WrittenBytes, s.RequestDuration}
}
