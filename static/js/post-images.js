// The post form's image field, enhanced: choosing a file uploads it at once (the browser
// session and the form's CSRF token, as for the form itself) and puts its Markdown where the
// cursor is in the content. Without this script, "Insert image" does the same through a
// round trip that appends it.
(function () {
  "use strict";
  const field = document.querySelector("[data-image-upload]");
  if (!field) return;
  const form = field.closest("form");
  const input = field.querySelector("input[type=file]");
  const button = field.querySelector("button");
  const status = field.querySelector("[data-upload-status]");
  const content = form.querySelector("textarea[name=content]");
  const token = form.querySelector("input[name=csrf_token]");
  if (!input || !content || !token || !window.fetch) return;
  button.hidden = true;

  // A text area keeps its selection when it loses the focus, so this is where the cursor was.
  function insert(markdown) {
    const before = content.value.slice(0, content.selectionStart);
    const after = content.value.slice(content.selectionEnd);
    const gap = before && !before.endsWith("\n\n") ? (before.endsWith("\n") ? "\n" : "\n\n") : "";
    const inserted = gap + markdown + "\n";
    content.value = before + inserted + after;
    const caret = before.length + inserted.length;
    content.focus();
    content.setSelectionRange(caret, caret);
  }

  async function upload(file) {
    const body = new FormData();
    body.append("csrf_token", token.value);
    body.append("file", file);
    status.textContent = "Uploading " + file.name + "…";
    try {
      const response = await fetch(field.dataset.imageUpload, {
        method: "POST",
        body: body,
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      const answer = await response.json();
      if (!response.ok) {
        status.textContent = answer.detail || "The image could not be uploaded.";
        return;
      }
      insert(answer.markdown);
      status.textContent = "Image inserted.";
      input.value = "";
    } catch (error) {
      status.textContent = "The image could not be uploaded; try again.";
    }
  }

  input.addEventListener("change", () => {
    if (input.files.length) upload(input.files[0]);
  });
})();
