package handlers

import (
	"fmt"
	"net/http"

	"github.com/bytedance/sonic"
	"github.com/labstack/echo/v4"
)

// sonicJSON is Echo's JSON codec. Request bodies reach it already checked
// against the spec, and decoding 1,000-item lookup bodies with
// encoding/json cost several times what the lookups themselves do.
type sonicJSON struct{}

func (sonicJSON) Serialize(c echo.Context, i any, indent string) error {
	enc := sonic.ConfigStd.NewEncoder(c.Response())
	if indent != "" {
		enc.SetIndent("", indent)
	}
	return enc.Encode(i)
}

func (sonicJSON) Deserialize(c echo.Context, i any) error {
	err := sonic.ConfigDefault.NewDecoder(c.Request().Body).Decode(i)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("decode JSON: %v", err)).SetInternal(err)
	}
	return nil
}
