/* Stands in for Intel's libollama-ggml-sycl.so, which needs an Intel GPU and aborts at start without one.
 * Every entry point the other libraries link against reports "no SYCL device": ggml's backend registry
 * skips a NULL registration, so Ollama starts on its CPU backend. Written from the library's exported
 * symbols (nm -D); the signatures follow ggml-sycl.h. */
#include <stdbool.h>
#include <stddef.h>

void *ggml_backend_sycl_reg(void) { return NULL; }
void *ggml_backend_sycl_init(int device) { (void)device; return NULL; }
bool ggml_backend_is_sycl(void *backend) { (void)backend; return false; }
void *ggml_backend_sycl_buffer_type(int device) { (void)device; return NULL; }
void *ggml_backend_sycl_split_buffer_type(const float *tensor_split) { (void)tensor_split; return NULL; }
void *ggml_backend_sycl_host_buffer_type(void) { return NULL; }
int ggml_backend_sycl_get_device_count(void) { return 0; }
void ggml_backend_sycl_print_sycl_devices(void) {}

void ggml_backend_sycl_get_gpu_list(int *id_list, int max_len) {
    for (int i = 0; i < max_len; i++) id_list[i] = -1;
}

void ggml_backend_sycl_get_device_description(int device, char *description, size_t description_size) {
    (void)device;
    if (description != NULL && description_size > 0) description[0] = '\0';
}

void ggml_backend_sycl_get_device_memory(int device, size_t *free, size_t *total) {
    (void)device;
    if (free != NULL) *free = 0;
    if (total != NULL) *total = 0;
}

/* Only called for a device that exists; with none, never. */
void *ggml_backend_sycl_get_device_name(int device) { (void)device; return NULL; }
