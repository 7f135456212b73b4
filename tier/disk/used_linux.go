package disk

import (
	"io/fs"
	"syscall"
	"time"
)

// lastUse is when the file was last used: its access time, which a hit
// sets (lookup), and reads too where the file system records them.
func lastUse(info fs.FileInfo) time.Time {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Atim.Sec, st.Atim.Nsec)
	}
	return info.ModTime()
}
