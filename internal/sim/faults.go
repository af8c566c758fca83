package sim

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/downshift-dev/downshift/internal/openai"
)

// fault is the failure injected into one request.
type fault int

const (
	faultNone fault = iota
	faultError
	faultRateLimit
	faultTimeout
	faultReset
	faultCut
)

func (f fault) String() string {
	switch f {
	case faultError:
		return "error"
	case faultRateLimit:
		return "rate_limit"
	case faultTimeout:
		return "timeout"
	case faultReset:
		return "reset"
	case faultCut:
		return "cut"
	}
	return "none"
}

// drawFault picks at most one fault for a request, by one seeded draw.
func (s *Server) drawFault() fault {
	f := s.opts.Faults
	if f.Error+f.RateLimit+f.Timeout+f.Reset+f.Cut == 0 {
		return faultNone
	}
	u := s.rng.Float64()
	for _, c := range []struct {
		rate float64
		f    fault
	}{{f.Error, faultError}, {f.RateLimit, faultRateLimit}, {f.Timeout, faultTimeout}, {f.Reset, faultReset}, {f.Cut, faultCut}} {
		if u < c.rate {
			return c.f
		}
		u -= c.rate
	}
	return faultNone
}

// injectFault fails the request the way f says, before any answer is written.
func (s *Server) injectFault(w http.ResponseWriter, r *http.Request, f fault) error {
	hdr := http.Header{}
	hdr.Set(HeaderSimulated, "true")
	hdr.Set(HeaderFault, f.String())
	switch f {
	case faultError:
		return &apiError{status: http.StatusInternalServerError, typ: openai.TypeServer, header: hdr,
			msg: "The server had an error while processing your request. (fault injected by the downshift simulator)"}
	case faultRateLimit:
		after := s.opts.Faults.RetryAfter
		if after <= 0 {
			after = time.Second
		}
		hdr.Set("Retry-After", strconv.Itoa(int(math.Ceil(after.Seconds()))))
		hdr.Set("Retry-After-Ms", strconv.FormatInt(after.Milliseconds(), 10))
		return &apiError{status: http.StatusTooManyRequests, typ: openai.TypeRateLimit, code: openai.CodeRateLimitExceeded,
			header: hdr, msg: "Rate limit reached for requests. (fault injected by the downshift simulator)"}
	case faultTimeout:
		select {
		case <-r.Context().Done():
		case <-s.stop:
		}
		// No response at all: close the connection.
		panic(http.ErrAbortHandler)
	case faultReset:
		hj, ok := w.(http.Hijacker)
		if !ok {
			panic(http.ErrAbortHandler)
		}
		conn, _, err := hj.Hijack()
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // close with RST, not FIN
		}
		_ = conn.Close()
		return errHandled
	}
	return nil
}
