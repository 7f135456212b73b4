package bench

import "fmt"

// maxFailures bounds the distinct failure reasons reported per burst.
const maxFailures = 5

// reasons groups why the nodes of a burst failed, by message.
type reasons struct {
	count map[string]int
	order []string // first seen first
}

func (rs *reasons) add(err error) {
	msg := shorten(err.Error())
	if rs.count == nil {
		rs.count = map[string]int{}
	}
	if rs.count[msg] == 0 {
		rs.order = append(rs.order, msg)
	}
	rs.count[msg]++
}

// list is the first maxFailures reasons, each with how many nodes it
// stopped, and how many more there were.
func (rs *reasons) list() []string {
	var out []string
	for i, msg := range rs.order {
		if i == maxFailures {
			return append(out, fmt.Sprintf("and %d more reasons", len(rs.order)-i))
		}
		out = append(out, fmt.Sprintf("%d× %s", rs.count[msg], msg))
	}
	return out
}
