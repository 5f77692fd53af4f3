package natsx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/volcanion/tracking/shared/apierr"
)

// HeaderCarrier adapts NATS headers for OpenTelemetry propagation.
type HeaderCarrier nats.Header

func (c HeaderCarrier) Get(k string) string { return nats.Header(c).Get(k) }
func (c HeaderCarrier) Set(k, v string)     { nats.Header(c).Set(k, v) }
func (c HeaderCarrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}

var propagator = propagation.TraceContext{}

// Inject writes the trace context of ctx into h.
func Inject(ctx context.Context, h nats.Header) { propagator.Inject(ctx, HeaderCarrier(h)) }

// Extract reads a trace context from h.
func Extract(ctx context.Context, h nats.Header) context.Context {
	return propagator.Extract(ctx, HeaderCarrier(h))
}

// HeaderTimeout carries how long the caller waits for the answer, in
// milliseconds (a time left, not an instant, as gRPC's timeout: hosts'
// clocks need not agree). A handler sees it as CallerDeadline: work that
// waits for a turn gives up when the caller stops waiting, and work
// started runs to the handler's own timeout (a report finished late is
// still cached for the caller's retry).
const HeaderTimeout = "Trk-Timeout-Ms"

// maxBudget bounds a header's time left: past it (or garbage), none.
const maxBudget = 24 * time.Hour

// callerDeadline reads the caller's time left from h, from start.
func callerDeadline(h micro.Headers, start time.Time) (time.Time, bool) {
	ms, err := strconv.ParseInt(h.Get(HeaderTimeout), 10, 64)
	if err != nil || ms < 0 || ms > maxBudget.Milliseconds() {
		return time.Time{}, false
	}
	return start.Add(time.Duration(ms) * time.Millisecond), true
}

type callerDeadlineKey struct{}

// CallerDeadline is when the caller of the request ctx serves stops
// waiting for its answer, when it said.
func CallerDeadline(ctx context.Context) (time.Time, bool) {
	t, ok := ctx.Value(callerDeadlineKey{}).(time.Time)
	return t, ok
}

// HandlerFunc serves one micro endpoint: data in, a JSON-able answer or an
// error out. A json.RawMessage answer is sent as it is.
type HandlerFunc func(ctx context.Context, data []byte) (any, error)

// Handler adapts fn to micro: errors travel as the stable code in the
// Nats-Service-Error-Code header and the *apierr.Error as the body; internal
// errors are logged here and sent without their cause.
func Handler(log zerolog.Logger, tracerName, op string, timeout time.Duration, fn HandlerFunc) micro.Handler {
	tracer := otel.Tracer(tracerName)
	return micro.HandlerFunc(func(req micro.Request) {
		ctx := Extract(context.Background(), nats.Header(req.Headers()))
		ctx, span := tracer.Start(ctx, op, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		start := time.Now()
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		ctx = context.WithValue(ctx, requestHeadersKey{}, nats.Header(req.Headers()))
		var resp any
		var err error
		if dl, ok := callerDeadline(req.Headers(), start); ok && !dl.After(start) {
			// Its caller gave up before it arrived: nobody reads the answer.
			err = apierr.New(apierr.Timeout, "the caller's deadline passed before the request was served")
		} else {
			if ok {
				ctx = context.WithValue(ctx, callerDeadlineKey{}, dl)
			}
			resp, err = recovered(ctx, fn, req.Data())
		}
		l := log.With().Str("op", op).Str("trace_id", span.SpanContext().TraceID().String()).Float64("latency_ms", float64(time.Since(start).Microseconds())/1000).Logger()
		var body []byte
		if raw, isRaw := resp.(json.RawMessage); isRaw && err == nil {
			body = raw // encoded already (a cached report: sent as stored)
		} else if err == nil {
			if body, err = json.Marshal(resp); err != nil {
				err = fmt.Errorf("encode answer: %w", err)
			}
		}
		if err != nil {
			ae := apierr.From(err)
			var pe *panicError
			switch {
			case errors.As(err, &pe):
				l.Error().Str("panic", fmt.Sprint(pe.value)).Str("stack", string(pe.stack)).Msg("handler panicked")
			case ae.Code == apierr.Internal:
				l.Error().Err(err).Msg("request failed")
			default:
				l.Debug().Str("code", string(ae.Code)).Msg("request refused")
			}
			eb, _ := json.Marshal(ae)
			_ = req.Error(string(ae.Code), ae.Message, eb)
			return
		}
		if err := req.Respond(body); err != nil {
			l.Error().Err(err).Msg("respond")
		}
	})
}

// panicError is a panic of a handler, turned into an internal error.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }

// recovered runs fn, turning a panic into an error: micro calls handlers on
// the subscription's goroutine, where a panic would end the process.
func recovered(ctx context.Context, fn HandlerFunc, data []byte) (resp any, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: debug.Stack()}
		}
	}()
	return fn(ctx, data)
}

// Call sends req to a micro endpoint and decodes the answer into resp. A
// service error comes back as its *apierr.Error; no responder or a timeout
// become Unavailable / Timeout errors.
func Call(ctx context.Context, nc *nats.Conn, subj string, req, resp any) error {
	data, err := json.Marshal(req)
	if err != nil {
		return err
	}
	msg := nats.NewMsg(subj)
	msg.Data = data
	Inject(ctx, msg.Header)
	injectAdminToken(ctx, msg.Header)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	dl, _ := ctx.Deadline()
	msg.Header.Set(HeaderTimeout, strconv.FormatInt(max(time.Until(dl).Milliseconds(), 1), 10))
	reply, err := nc.RequestMsgWithContext(ctx, msg)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return apierr.New(apierr.Unavailable, "the %s service is not running", serviceOf(subj))
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return apierr.New(apierr.Timeout, "the %s service did not answer in time", serviceOf(subj))
	case err != nil:
		return apierr.New(apierr.Unavailable, "cannot reach the %s service: %v", serviceOf(subj), err)
	}
	if code := reply.Header.Get(micro.ErrorCodeHeader); code != "" {
		var ae apierr.Error
		if json.Unmarshal(reply.Data, &ae) != nil || ae.Code == "" {
			ae = apierr.Error{Code: apierr.Code(code), Message: reply.Header.Get(micro.ErrorHeader)}
		}
		return &ae
	}
	if resp == nil {
		return nil
	}
	if reply.Header.Get(HeaderSealed) != "" {
		if reply.Data, err = openSealed(ctx, reply.Data); err != nil {
			return errors.Join(apierr.New(apierr.Internal, "cannot open the answer of %s", subj), err)
		}
	}
	if err := json.Unmarshal(reply.Data, resp); err != nil {
		return errors.Join(apierr.New(apierr.Internal, "bad answer from %s", subj), err)
	}
	return nil
}

func serviceOf(subj string) string {
	for i := 0; i < len(subj); i++ {
		if subj[i] == '.' {
			rest := subj[i+1:]
			for j := 0; j < len(rest); j++ {
				if rest[j] == '.' {
					return rest[:j]
				}
			}
			return rest
		}
	}
	return subj
}
