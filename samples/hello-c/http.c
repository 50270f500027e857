/* wasi:http/proxy component sample for Skiff in C: GET / answers "Hello from C on Skiff!",
 * every other path 404. Bindings come from `wit-bindgen c` (see ../build.sh). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "hello_c_http.h"

static void respond(wasi_http_types_own_response_outparam_t out, uint16_t status, const char *text) {
    size_t len = strlen(text);
    char length[24];
    snprintf(length, sizeof length, "%zu", len);

    hello_c_http_tuple2_field_name_field_value_t entries[2];
    hello_c_http_string_set(&entries[0].f0, "content-type");
    entries[0].f1.ptr = (uint8_t *)"text/plain; charset=utf-8";
    entries[0].f1.len = strlen("text/plain; charset=utf-8");
    hello_c_http_string_set(&entries[1].f0, "content-length");
    entries[1].f1.ptr = (uint8_t *)length;
    entries[1].f1.len = strlen(length);
    hello_c_http_list_tuple2_field_name_field_value_t list = {entries, 2};

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
            size_t n = len - offset > 4096 ? 4096 : len - offset;
            hello_c_http_list_u8_t chunk = {(uint8_t *)text + offset, n};
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

void exports_wasi_http_incoming_handler_handle(
    exports_wasi_http_incoming_handler_own_incoming_request_t request,
    exports_wasi_http_incoming_handler_own_response_outparam_t response_out) {
    hello_c_http_string_t path;
    bool root = false;
    if (wasi_http_types_method_incoming_request_path_with_query(
            wasi_http_types_borrow_incoming_request(request), &path)) {
        root = (path.len == 1 && path.ptr[0] == '/') || (path.len >= 2 && path.ptr[0] == '/' && path.ptr[1] == '?');
        hello_c_http_string_free(&path);
    } else {
        root = true;
    }
    wasi_http_types_incoming_request_drop_own(request);
    if (root) {
        respond(response_out, 200, "Hello from C on Skiff!\n");
    } else {
        respond(response_out, 404, "not found\n");
    }
}
