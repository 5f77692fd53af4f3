package workers

import (
	"context"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/volcanion/tracking/shared/natsx"
)

// tracer is looked up at each use: a provider installed later (a test's)
// must be the one used.
func tracer() trace.Tracer { return otel.Tracer("workers") }

// maxLinks bounds the links of a batch's span to the spans that published
// its events.
const maxLinks = 128

// eventSpans are the spans of a batch's traced events, by message.
type eventSpans map[jetstream.Msg]trace.Span

// traceBatch starts the batch's span, linked to the spans that published
// its events, and one span per event whose publisher was sampled, in the
// publisher's trace: an event's trace runs edge → NATS → worker → storage.
// end ends them all.
func traceBatch(ctx context.Context, msgs []jetstream.Msg) (context.Context, eventSpans, func()) {
	var links []trace.Link
	parents := make(map[jetstream.Msg]context.Context)
	for _, m := range msgs {
		pctx := natsx.Extract(context.Background(), nats.Header(m.Headers()))
		sc := trace.SpanContextFromContext(pctx)
		if !sc.IsValid() {
			continue
		}
		if len(links) < maxLinks {
			links = append(links, trace.Link{SpanContext: sc})
		}
		if sc.IsSampled() {
			parents[m] = pctx
		}
	}
	ctx, batch := tracer().Start(ctx, "store batch", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(links...),
		trace.WithAttributes(attribute.Int("messaging.batch.message_count", len(msgs))))
	spans := make(eventSpans, len(parents))
	for m, pctx := range parents {
		_, sp := tracer().Start(pctx, "store event", trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithLinks(trace.Link{SpanContext: batch.SpanContext()}))
		spans[m] = sp
	}
	return ctx, spans, func() {
		for _, sp := range spans {
			sp.End()
		}
		batch.End()
	}
}

// write starts, under each traced event of part, the span of the storage
// write that holds it; the returned func ends them with the write's error.
func (es eventSpans) write(part []item) func(error) {
	if len(es) == 0 {
		return func(error) {}
	}
	var writes []trace.Span
	for _, it := range part {
		if parent, ok := es[it.m]; ok {
			_, sp := tracer().Start(trace.ContextWithSpan(context.Background(), parent), "storage WriteEvents", trace.WithSpanKind(trace.SpanKindClient),
				trace.WithAttributes(attribute.Int("events", len(part))))
			writes = append(writes, sp)
		}
	}
	return func(err error) {
		for _, sp := range writes {
			if err != nil {
				sp.SetStatus(codes.Error, err.Error())
			}
			sp.End()
		}
	}
}
