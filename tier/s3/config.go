package s3

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// Config is the bucket and how the tier uses it. Only Bucket is required.
type Config struct {
	// Bucket is the bucket's name. Required.
	Bucket string
	// Endpoint is the store's URL (http://127.0.0.1:9000); "" means AWS S3
	// for Region.
	Endpoint string
	// Region is the bucket's region; "" lets the client ask the store.
	Region string
	// Prefix goes before every key ("cacheyd/"): keys are
	// <Prefix>blobs/sha256/<2 hex>/<hex>. "" means none.
	Prefix string
	// PathStyle addresses the bucket in the path (MinIO-compatible
	// stores, versitygw); false lets the client choose (virtual host on
	// AWS).
	PathStyle bool
	// Timeout bounds each S3 request until its answer's headers, and how
	// long a body may send nothing; 0 means 5s. A slow store is skipped,
	// never waited for.
	Timeout time.Duration
	// AccessKey and SecretKey are static keys; empty means the standard
	// chain: env AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the AWS
	// credentials file, a web identity token file (AWS_WEB_IDENTITY_TOKEN_FILE
	// with AWS_ROLE_ARN: EKS IRSA), container credentials (EKS Pod
	// Identity), then the instance profile.
	AccessKey, SecretKey string
	// Queue is how many uploads may wait; 0 means 256. When it is full an
	// upload is dropped and counted: Keep never blocks.
	Queue int
	// Uploads is how many uploads run at once; 0 means 2.
	Uploads int
	// PartSize is the multipart part size; objects above it are uploaded
	// in parts. 0 means 16 MiB; S3 allows no less than 5 MiB.
	PartSize int64
	// Read opens the committed file an upload reads (the disk tier's).
	// Required for uploads; nil means Keep drops everything (counted).
	Read func(dg oci.Digest) (io.ReadCloser, tier.Entry, error)
	// Uploaded, if set, is told how each upload ended: UploadStored,
	// UploadPresent or UploadFailed. It is called on the upload's own
	// goroutine and must not block.
	Uploaded func(e tier.Entry, result string)
	// Transport carries the S3 requests; nil means a transport of the
	// tier's own (with Timeout as its header timeout). Tests wrap it to
	// count requests.
	Transport http.RoundTripper
	// Metrics receives the tier's counts. Nil means nowhere.
	Metrics *metrics.Metrics
	// Logger receives failed uploads. Nil means slog.Default().
	Logger *slog.Logger
}

// Results of an upload, as Config.Uploaded and the uploads metric name them.
const (
	UploadStored  = "stored"
	UploadPresent = "present"
	UploadFailed  = "failed"
	UploadDropped = "dropped"
)

// Defaults of the zero Config fields.
const (
	DefaultTimeout  = 5 * time.Second
	DefaultQueue    = 256
	DefaultUploads  = 2
	DefaultPartSize = 16 << 20
	// minPartSize is the smallest part S3 takes (but for the last).
	minPartSize = 5 << 20
)

// withDefaults checks cfg and fills its zero fields.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Bucket == "" {
		return cfg, errors.New("s3: no bucket")
	}
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return cfg, fmt.Errorf("s3: endpoint %q: want http://host[:port] or https://host[:port]", cfg.Endpoint)
		}
		if u.Path != "" && u.Path != "/" {
			return cfg, fmt.Errorf("s3: endpoint %q: a path is not allowed (the bucket is named apart)", cfg.Endpoint)
		}
	}
	if (cfg.AccessKey == "") != (cfg.SecretKey == "") {
		return cfg, errors.New("s3: an access key needs its secret key, and the other way round")
	}
	if cfg.Timeout < 0 || cfg.Queue < 0 || cfg.Uploads < 0 || cfg.PartSize < 0 {
		return cfg, errors.New("s3: timeout, queue, uploads and part size may not be negative")
	}
	if cfg.PartSize != 0 && cfg.PartSize < minPartSize {
		return cfg, fmt.Errorf("s3: part size %d is below S3's minimum of %d", cfg.PartSize, minPartSize)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Queue == 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.Uploads == 0 {
		cfg.Uploads = DefaultUploads
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(nil)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}

// key is dg's object key: distribution's layout under the prefix.
func (s *Store) key(dg oci.Digest) string {
	h := dg.Hex()
	return s.cfg.Prefix + "blobs/" + dg.Algorithm() + "/" + h[:2] + "/" + h
}
