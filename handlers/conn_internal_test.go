package handlers

import "testing"

func TestSniffConnSeesAmbiguousFraming(t *testing.T) {
	both := "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
	cases := []struct {
		name, raw string
		want      bool
	}{
		{"both", both, true},
		{"both, lower case, bare LF", "POST / HTTP/1.1\ncontent-length: 5\ntransfer-encoding: chunked\n\n", true},
		{"length only", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", false},
		{"chunked only", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false},
		{"two requests, one header each", "POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false},
	}
	for _, tc := range cases {
		for _, chunk := range []int{1, 3, 7, len(tc.raw)} {
			c := &sniffConn{}
			for b := []byte(tc.raw); len(b) > 0; {
				n := min(chunk, len(b))
				c.scan(b[:n])
				b = b[n:]
			}
			if got := c.ambiguous.Load(); got != tc.want {
				t.Errorf("%s, read %d bytes at a time: ambiguous = %v, want %v", tc.name, chunk, got, tc.want)
			}
		}
	}
}
