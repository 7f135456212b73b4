package tier

// Source says where an answer came from, for the access log and metrics.
type Source uint8

const (
	SourceMemory      Source = iota + 1 // memory tier hit
	SourceDisk                          // disk tier hit
	SourceFillJoined                    // streamed a fill another request started
	SourceFillNew                       // started a fill and streams it
	SourcePassThrough                   // streamed from upstream with the client's credentials, not cached
	SourceUpstream                      // a HEAD answered by an upstream HEAD
	SourceUncached                      // streamed from upstream as cacheyd, not cached: the disk could not take it
)

// String names the source ("memory", "disk", "joined", "fill", "passthrough", "upstream", "uncached").
func (s Source) String() string {
	switch s {
	case SourceMemory:
		return "memory"
	case SourceDisk:
		return "disk"
	case SourceFillJoined:
		return "joined"
	case SourceFillNew:
		return "fill"
	case SourcePassThrough:
		return "passthrough"
	case SourceUpstream:
		return "upstream"
	case SourceUncached:
		return "uncached"
	}
	return "none"
}
