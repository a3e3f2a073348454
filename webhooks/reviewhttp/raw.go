package reviewhttp

import (
	"sync"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"k8s.io/apimachinery/pkg/runtime"
)

// unmarshalReview decodes a review body into v, strictly (go-json-experiment's
// defaults). Its embedded objects (runtime.RawExtension: an admission
// request's object, old object and options, a conversion request's objects)
// are slices of body, not copies: RawExtension.UnmarshalJSON copies each one,
// a quarter of the bytes a MeshConfig UPDATE allocates. body belongs to this
// request and is not written after decoding; each slice's capacity ends with
// it, so an append to one copies instead of overwriting what follows.
func unmarshalReview(body []byte, v any) error {
	d := rawDecoders.Get().(*rawDecoder)
	d.body = body
	err := jsonv2.Unmarshal(body, v, d.opts)
	d.body = nil // the pool must not keep a request's body alive
	rawDecoders.Put(d)
	return err
}

// rawDecoder is the option that decodes RawExtensions as slices of body.
// The option is built once per pooled decoder, not per request: building it
// costs more allocations than a small pod's copy saves, and go-json-experiment
// caches its per-type lookups in it.
type rawDecoder struct {
	body []byte
	opts jsonv2.Options
}

var rawDecoders = sync.Pool{New: func() any {
	d := &rawDecoder{}
	d.opts = jsonv2.WithUnmarshalers(jsonv2.UnmarshalFromFunc(d.raw))
	return d
}}

func (d *rawDecoder) raw(dec *jsontext.Decoder, re *runtime.RawExtension) error {
	val, err := dec.ReadValue()
	if err != nil {
		return err
	}
	if val.Kind() == 'n' {
		return nil // as RawExtension.UnmarshalJSON: null leaves it empty
	}
	end := dec.InputOffset()
	start := end - int64(len(val))
	re.Raw = d.body[start:end:end]
	return nil
}
