/* {{name}}: a wasi:http component in C. Every request gets "Hello from {{name}}!" and the path
 * it asked for. The bindings (app.h, app.c) come from `wit-bindgen c wit` (see build.sh). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "app.h"

/* Sends `status` with a plain-text body. */
static void respond(wasi_http_types_own_response_outparam_t out, uint16_t status, const char *text, size_t len) {
    char length[24];
    snprintf(length, sizeof length, "%zu", len);

    app_tuple2_field_name_field_value_t entries[2];
    app_string_set(&entries[0].f0, "content-type");
    entries[0].f1.ptr = (uint8_t *)"text/plain; charset=utf-8";
    entries[0].f1.len = strlen("text/plain; charset=utf-8");
    app_string_set(&entries[1].f0, "content-length");
    entries[1].f1.ptr = (uint8_t *)length;
    entries[1].f1.len = strlen(length);
    app_list_tuple2_field_name_field_value_t list = {entries, 2};

    wasi_http_types_own_fields_t headers;
    wasi_http_types_header_error_t header_err;
    if (!wasi_http_types_static_fields_from_list(&list, &headers, &header_err)) {
        headers = wasi_http_types_constructor_fields();
    }
    wasi_http_types_own_outgoing_response_t response = wasi_http_types_constructor_outgoing_response(headers);
    wasi_http_types_borrow_outgoing_response_t borrowed = wasi_http_types_borrow_outgoing_response(response);
    wasi_http_types_method_outgoing_response_set_status_code(borrowed, status);

    wasi_http_types_own_outgoing_body_t body;
    if (!wasi_http_types_method_outgoing_response_body(borrowed, &body)) {
        wasi_http_types_outgoing_response_drop_own(response);
        wasi_http_types_response_outparam_drop_own(out);
        return;
    }
    wasi_http_types_result_own_outgoing_response_error_code_t result;
    result.is_err = false;
    result.val.ok = response;
    wasi_http_types_static_response_outparam_set(out, &result);

    wasi_http_types_own_output_stream_t stream;
    if (wasi_http_types_method_outgoing_body_write(wasi_http_types_borrow_outgoing_body(body), &stream)) {
        size_t offset = 0;
        while (offset < len) {
            /* blocking-write-and-flush takes at most 4096 bytes at a time */
            size_t n = len - offset > 4096 ? 4096 : len - offset;
            app_list_u8_t chunk = {(uint8_t *)text + offset, n};
            wasi_io_streams_stream_error_t err;
            if (!wasi_io_streams_method_output_stream_blocking_write_and_flush(
                    wasi_io_streams_borrow_output_stream(stream), &chunk, &err)) {
                break;
            }
            offset += n;
        }
        wasi_io_streams_output_stream_drop_own(stream);
    }
    wasi_http_types_error_code_t finish_err;
    wasi_http_types_static_outgoing_body_finish(body, NULL, &finish_err);
}

/* The export: called once per request. */
void exports_wasi_http_incoming_handler_handle(
    exports_wasi_http_incoming_handler_own_incoming_request_t request,
    exports_wasi_http_incoming_handler_own_response_outparam_t response_out) {
    char text[1024];
    int len;
    app_string_t path;
    if (wasi_http_types_method_incoming_request_path_with_query(
            wasi_http_types_borrow_incoming_request(request), &path)) {
        len = snprintf(text, sizeof text, "Hello from {{name}}! You asked for %.*s\n", (int)path.len, (const char *)path.ptr);
        app_string_free(&path);
    } else {
        len = snprintf(text, sizeof text, "Hello from {{name}}!\n");
    }
    wasi_http_types_incoming_request_drop_own(request);
    if (len < 0) {
        respond(response_out, 500, "internal error\n", strlen("internal error\n"));
        return;
    }
    if ((size_t)len >= sizeof text) {
        len = sizeof text - 1;
    }
    respond(response_out, 200, text, (size_t)len);
}
