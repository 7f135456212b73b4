package daemon

import (
	"fmt"

	"github.com/alecthomas/kong"
	"github.com/dustin/go-humanize"
)

// ByteSize is a flag value in bytes written in human form: 256MiB, 20GiB,
// 1.5GB or a plain number of bytes.
type ByteSize int64

// Decode implements kong.MapperValue.
func (b *ByteSize) Decode(ctx *kong.DecodeContext) error {
	var s string
	if err := ctx.Scan.PopValueInto("size", &s); err != nil {
		return err
	}
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return fmt.Errorf("size %q: want a number of bytes such as 256MiB or 20GiB", s)
	}
	if n > 1<<62 {
		return fmt.Errorf("size %q: too large", s)
	}
	*b = ByteSize(n)
	return nil
}

func (b ByteSize) String() string { return humanize.IBytes(uint64(b)) }
