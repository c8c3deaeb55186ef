// Package gen holds only generated code: the OpenAPI 3 document converted from
// spec/ and the types, Echo strict server and embedded spec oapi-codegen
// generates from it. Run `make generate` after changing anything in spec/.
package gen

//go:generate go run ../spec/specgen -in ../spec -out openapi.json
//go:generate go run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen -config oapi-codegen.yaml openapi.json
