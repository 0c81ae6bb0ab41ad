//! An in-memory [`ImageRuntime`] for tests and benchmarks: images, users and a disk whose
//! available bytes grow by an image's exclusive bytes when it is removed. Like Docker, it
//! refuses to remove an image that a container uses.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::runtime::{
    DiskUsage, Image, ImageFs, ImageRuntime, ImageUser, InUseIndex, RemoveError, Result,
};

/// The fake runtime's state; tests change it between planning and applying.
#[derive(Debug, Default, Clone)]
pub(crate) struct FakeState {
    pub images: Vec<Image>,
    pub users: Vec<ImageUser>,
    pub disk: DiskUsage,
    /// A user added right after the executor's re-check and before the removal of the image
    /// with this ID: the runtime then refuses, as Docker does for an image in use.
    pub(crate) user_appears_on_remove: Option<(String, ImageUser)>,
    /// IDs whose removal fails with this message.
    pub(crate) fail_remove: Vec<(String, String)>,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct FakeRuntime {
    pub state: Mutex<FakeState>,
    /// How many times `list_users` was called (the executor re-checks before each removal).
    pub(crate) user_listings: AtomicUsize,
    /// How many removals were attempted.
    pub removals: AtomicUsize,
}

impl FakeRuntime {
    pub(crate) fn new(state: FakeState) -> Self {
        Self {
            state: Mutex::new(state),
            ..Self::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ImageRuntime for FakeRuntime {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn list_images(&self) -> Result<Vec<Image>> {
        Ok(self.lock().images.clone())
    }

    async fn list_users(&self) -> Result<Vec<ImageUser>> {
        self.user_listings.fetch_add(1, Ordering::Relaxed);
        Ok(self.lock().users.clone())
    }

    async fn image_fs(&self) -> Result<ImageFs> {
        let s = self.lock();
        let used_bytes = s.disk.capacity_bytes - s.disk.available_bytes;
        Ok(ImageFs {
            mountpoint: "/var/lib/fake".into(),
            disk: s.disk,
            used_bytes,
        })
    }

    async fn remove_image(&self, image: &Image) -> Result<(), RemoveError> {
        self.removals.fetch_add(1, Ordering::Relaxed);
        let mut s = self.lock();
        if let Some((id, user)) = s.user_appears_on_remove.clone()
            && id == image.id
        {
            s.users.push(user);
        }
        if let Some((_, msg)) = s.fail_remove.iter().find(|(id, _)| *id == image.id) {
            return Err(RemoveError::Other(msg.clone()));
        }
        if InUseIndex::new(&s.users).uses(image) {
            return Err(RemoveError::InUse(format!(
                "conflict: unable to delete {} - image is being used",
                image.id
            )));
        }
        let Some(pos) = s.images.iter().position(|i| i.id == image.id) else {
            return Ok(());
        };
        let gone = s.images.remove(pos);
        s.disk.available_bytes =
            (s.disk.available_bytes + gone.exclusive_bytes()).min(s.disk.capacity_bytes);
        Ok(())
    }
}
