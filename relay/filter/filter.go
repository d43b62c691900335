// Package filter compiles subscription filters: expressions of the Common Expression
// Language (CEL, https://cel.dev) over an event and its JSON payload. It is relay's
// relay.FilterCompiler (relay.Options.CompileFilter).
//
// An expression sees two variables:
//
//   - event: the eventrelay.v1.Event, with the fields id, source, type, subject, time,
//     received_time (timestamps), data_content_type, headers (a map of lower-case header
//     names), partition_key, trace_parent and verification (provider, scheme, key_index,
//     key_id, signed_time);
//   - data: the payload parsed as JSON (objects, lists, strings, numbers, booleans, null), or
//     null when the event is not JSON.
//
// For example:
//
//	event.type.startsWith("invoice.") && data.data.object.amount_due > 100000
//
// An expression must be of type bool. It is parsed and type-checked once per subscription;
// a bad one is a relay.CodeInvalid error with CEL's message and the position. Evaluation has
// a cost limit (CostLimit), so no expression can burn a core; an expression that cannot be
// evaluated on an event (a missing field, a wrong type, the cost limit) does not match it.
// Numbers compare across types (data.n > 1 holds for the JSON number 1.5).
//
// Expressions that only compare string fields of event with constants run without CEL's
// interpreter, on the stored bytes (fast.go), with the same meaning.
package filter

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"
	exprpb "google.golang.org/genproto/googleapis/api/expr/v1alpha1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/relay"
)

// CostLimit bounds the evaluation cost of one expression on one event, in CEL's cost units
// (about one per operation and per element a comprehension visits). Evaluation stops with
// an error beyond it; the event then does not match. 10,000 units take about half a
// millisecond here (100,000 took 5 ms: a nested comprehension over a 1,000-element list in
// each of 20 subscriptions kept two cores busy at 200 events/s); a filter that looks at an
// event's fields, or at a list of a few hundred items, stays far below it.
const CostLimit = 10_000

// maxRecursion bounds the nesting of an expression's parse tree.
const maxRecursion = 64

var (
	envOnce sync.Once
	env     *cel.Env
	envErr  error
)

func newEnv() (*cel.Env, error) {
	envOnce.Do(func() {
		env, envErr = cel.NewEnv(
			cel.Types(&eventrelayv1.Event{}),
			cel.Variable("event", cel.ObjectType("eventrelay.v1.Event")),
			cel.Variable("data", cel.DynType),
			cel.CrossTypeNumericComparisons(true),
			cel.ParserRecursionLimit(maxRecursion),
			cel.ParserExpressionSizeLimit(relay.MaxFilterLen),
		)
	})
	return env, envErr
}

// Compile parses and type-checks expr and returns it as a relay.Filter. A bad expression is
// a relay.CodeInvalid error: "filter: " and CEL's message, which gives the line and column
// and points at the problem.
func Compile(expr string) (relay.Filter, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, relay.Errorf(relay.CodeInvalid, "filter: empty expression")
	}
	if len(expr) > relay.MaxFilterLen {
		return nil, relay.Errorf(relay.CodeInvalid, "filter: at most %d bytes, got %d", relay.MaxFilterLen, len(expr))
	}
	e, err := newEnv()
	if err != nil {
		return nil, relay.WrapError(relay.CodeInternal, err, "filter: the expression environment failed")
	}
	ast, iss := e.Compile(expr)
	if iss.Err() != nil {
		return nil, relay.Errorf(relay.CodeInvalid, "filter: %s", iss.Err())
	}
	if !ast.OutputType().IsExactType(cel.BoolType) && !ast.OutputType().IsExactType(cel.DynType) {
		return nil, relay.Errorf(relay.CodeInvalid, "filter: the expression is of type %s; it must be a bool", ast.OutputType())
	}
	// The runtime cost tracker costs about a sixth of an evaluation: an expression whose
	// worst case is known to stay within CostLimit (no comprehension or string function
	// over data of unknown size) runs without it.
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	if est, err := e.EstimateCost(ast, unknownSizes{}); err != nil || est.Max > CostLimit {
		opts = append(opts, cel.CostLimit(CostLimit))
	}
	prg, err := e.Program(ast, opts...)
	if err != nil {
		return nil, relay.Errorf(relay.CodeInvalid, "filter: %v", err)
	}
	p := &program{prg: prg, usesData: references(ast, "data"), fast: compileFast(ast)}
	if !p.usesData { // data needs the whole event (its content type and bytes)
		p.fields = eventFields(ast)
	}
	return p, nil
}

// eventFields lists the numbers of the fields of event the checked expression reads, each as
// event.<field> (a nested field through its top-level one), so that only those are decoded;
// nil (the whole event) when it uses event otherwise, e.g. as a whole value.
func eventFields(ast *cel.Ast) []protowire.Number {
	checked, err := cel.AstToCheckedExpr(ast)
	if err != nil {
		return nil
	}
	refs := checked.GetReferenceMap()
	// An identifier is the variable event when the checker resolved it to it (a
	// comprehension's variable of the same name is not).
	isEvent := func(e *exprpb.Expr) bool {
		return e.GetIdentExpr().GetName() == "event" && refs[e.GetId()].GetName() == "event"
	}
	desc := (&eventrelayv1.Event{}).ProtoReflect().Descriptor().Fields()
	nums, whole := []protowire.Number{}, false
	var walk func(e *exprpb.Expr)
	walk = func(e *exprpb.Expr) {
		if e == nil || whole {
			return
		}
		switch k := e.GetExprKind().(type) {
		case *exprpb.Expr_IdentExpr:
			whole = whole || isEvent(e)
		case *exprpb.Expr_SelectExpr:
			if !isEvent(k.SelectExpr.GetOperand()) {
				walk(k.SelectExpr.GetOperand())
				return
			}
			f := desc.ByName(protoreflect.Name(k.SelectExpr.GetField()))
			if f == nil {
				whole = true
				return
			}
			if !slices.Contains(nums, f.Number()) {
				nums = append(nums, f.Number())
			}
		case *exprpb.Expr_CallExpr:
			walk(k.CallExpr.GetTarget())
			for _, a := range k.CallExpr.GetArgs() {
				walk(a)
			}
		case *exprpb.Expr_ListExpr:
			for _, x := range k.ListExpr.GetElements() {
				walk(x)
			}
		case *exprpb.Expr_StructExpr:
			for _, en := range k.StructExpr.GetEntries() {
				walk(en.GetMapKey())
				walk(en.GetValue())
			}
		case *exprpb.Expr_ComprehensionExpr:
			c := k.ComprehensionExpr
			for _, x := range []*exprpb.Expr{c.GetIterRange(), c.GetAccuInit(), c.GetLoopCondition(), c.GetLoopStep(), c.GetResult()} {
				walk(x)
			}
		}
	}
	walk(checked.GetExpr())
	if whole {
		return nil
	}
	return nums
}

// unknownSizes is the cost estimator that knows nothing of the sizes of the data: any
// list, map or string from the event or the payload may be arbitrarily large.
type unknownSizes struct{}

func (unknownSizes) EstimateCallCost(string, string, *cost.AstNode, []cost.AstNode) *cost.CallEstimate {
	return nil
}

func (unknownSizes) EstimateSize(cost.AstNode) *cost.SizeEstimate { return nil }

// references reports whether the checked expression refers to the variable name.
func references(ast *cel.Ast, name string) bool {
	checked, err := cel.AstToCheckedExpr(ast)
	if err != nil {
		return true // cannot tell: assume it does
	}
	for _, r := range checked.GetReferenceMap() {
		if r.GetName() == name {
			return true
		}
	}
	return false
}

type program struct {
	prg      cel.Program
	usesData bool
	// fields are the fields of event the expression reads (nil: the whole event).
	fields []protowire.Number
	// fast, when set, evaluates the expression without CEL (fast.go).
	fast *fastProgram
}

func (p *program) UsesData() bool { return p.usesData }

// Match evaluates the expression on in. An error result, or a non-bool one, is an error.
func (p *program) Match(in *relay.FilterInput) (bool, error) {
	if p.fast != nil {
		return p.fast.match(in.Raw())
	}
	ev, err := in.EventFields(p.fields)
	if err != nil {
		return false, err
	}
	out, _, err := p.prg.Eval(&activation{in: in, ev: ev, usesData: p.usesData})
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("filter: the expression gave %s, not a bool", out.Type().TypeName())
	}
	return bool(b), nil
}

// MatchRaw evaluates the expression on the stored event raw (relay.RawMatcher): on the
// bytes when the expression has a fast form, else as Match on an input of its own.
func (p *program) MatchRaw(raw []byte) (bool, error) {
	if p.fast != nil {
		return p.fast.match(raw)
	}
	return p.Match(relay.NewFilterInput(raw))
}

// activation resolves event and data, the payload parsed only when the expression reads it.
type activation struct {
	in       *relay.FilterInput
	ev       *eventrelayv1.Event
	usesData bool
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "event":
		return a.ev, true
	case "data":
		if !a.usesData {
			return nil, true
		}
		return a.in.Data(), true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }
