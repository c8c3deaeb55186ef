package handlers

import (
	"fmt"
	"net/http"
	"unsafe"

	"github.com/bytedance/sonic"
	"github.com/labstack/echo/v4"

	"github.com/sigil-matrix/sigil/spec/validate"
)

// sonicJSON is Echo's JSON codec. Request bodies reach it already checked
// against the spec, and decoding 1,000-item lookup bodies with
// encoding/json cost several times what the lookups themselves do.
type sonicJSON struct{}

// bodyJSON decodes request bodies. Keys match case-sensitively: the
// validator checked the body under its exact keys (JSON is case-sensitive),
// and encoding/json's (and sonic's default) case-insensitive matching would
// let `"Threepids"` replace the validated `"threepids"` (issue 10).
// Duplicate keys never get here: the validator refuses them.
var bodyJSON = sonic.Config{CaseSensitive: true}.Froze()

func (sonicJSON) Serialize(c echo.Context, i any, indent string) error {
	enc := sonic.ConfigStd.NewEncoder(c.Response())
	if indent != "" {
		enc.SetIndent("", indent)
	}
	return enc.Encode(i)
}

func (sonicJSON) Deserialize(c echo.Context, i any) error {
	var err error
	if b, ok := c.Request().Body.(*validate.Body); ok {
		// The validator has the body in memory already, and nothing
		// writes to it: decode it in place, rather than through a stream
		// decoder's growing buffer or Unmarshal's defensive copy. The
		// two big lookup bodies have their own decoder (lookupdecode.go).
		if decodeHot(b, i) {
			return nil
		} else if data := b.Bytes(); len(data) > 0 {
			err = bodyJSON.UnmarshalFromString(unsafe.String(&data[0], len(data)), i)
		}
	} else {
		err = bodyJSON.NewDecoder(c.Request().Body).Decode(i)
	}
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("decode JSON: %v", err)).SetInternal(err)
	}
	return nil
}
